"""`onenode plan`: which TP x PP layout, how many KV blocks, and the commands to start it.

A thin edge: parse, find the model's shape (model_shape.py), call the pure planner (plan.py),
render (report.py). The root app registers it with `app.command("plan")(plan)`.

`--cluster` reads the live cluster's shape with the healthcheck's probes. The engine never imports
healthcheck, so the root app hands that reader in (`set_live_cluster_reader`).
"""

from collections.abc import Callable
from typing import Annotated

import typer
from rich.console import Console

from engine.planner.model_shape import load_model_shape
from engine.planner.plan import PlanRequest, make_plan
from engine.planner.report import plan_json, render_plan
from engine.planner.strategy import ClusterShape
from onenode.errors import ConfigError
from onenode.units import parse_bytes

_live_cluster_reader: Callable[[str], ClusterShape] | None = None


def set_live_cluster_reader(reader: Callable[[str], ClusterShape]) -> None:
    global _live_cluster_reader
    _live_cluster_reader = reader


def plan(
    model: Annotated[str, typer.Argument(
        help="Local config.json, model directory or GGUF file, or a known model "
             "(e.g. Llama-2-70B, meta-llama/Meta-Llama-3-8B)")],
    nodes: Annotated[int, typer.Option(help="Nodes in the cluster")] = 1,
    gpus_per_node: Annotated[int, typer.Option(help="GPUs per node")] = 1,
    gpu_memory: Annotated[str, typer.Option(help="Memory of one GPU, e.g. 80GiB")] = "80GiB",
    gpu_memory_utilization: Annotated[float, typer.Option()] = 0.9,
    max_model_len: Annotated[int | None, typer.Option()] = None,
    dtype: Annotated[str, typer.Option(help="auto, bf16, fp16, fp32")] = "auto",
    block_size: Annotated[int, typer.Option()] = 16,
    max_num_seqs: Annotated[int, typer.Option()] = 256,
    max_num_batched_tokens: Annotated[int | None, typer.Option()] = None,
    kv_cache_space_gib: Annotated[float | None, typer.Option(
        help="CPU KV cache size for the # CPU blocks prediction (engine default 4)")] = None,
    target_tokens: Annotated[int | None, typer.Option(
        help="Say how many GPUs/nodes give this many KV tokens")] = None,
    target_concurrency: Annotated[float | None, typer.Option(
        help="Say how many GPUs/nodes give this many max_model_len requests at once")] = None,
    cluster: Annotated[bool, typer.Option(
        "--cluster", help="Read nodes, GPUs and GPU memory from the live Ray cluster")] = False,
    address: Annotated[str, typer.Option(help="Ray address for --cluster")] = "auto",
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Plan TP x PP and predict # GPU blocks, max tokens and concurrency before launching."""
    knobs = dict(gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                 dtype=dtype, block_size=block_size, max_num_seqs=max_num_seqs,
                 max_num_batched_tokens=max_num_batched_tokens,
                 kv_cache_space_gib=kv_cache_space_gib, target_tokens=target_tokens,
                 target_concurrency=target_concurrency)
    if cluster:
        if _live_cluster_reader is None:
            raise ConfigError("--cluster needs the healthcheck's probes; run it as `onenode plan`")
        shape = _live_cluster_reader(address)
    else:
        shape = ClusterShape(nodes, gpus_per_node, parse_bytes(gpu_memory, "GiB", "--gpu-memory"))
    if not run_plan(model, shape, knobs, json_out):
        raise typer.Exit(1)


def run_plan(model: str, shape: ClusterShape, knobs: dict, json_out: bool) -> bool:
    """Plan and print; False when the model does not fit."""
    name, model_config, source = load_model_shape(model)
    req = PlanRequest(model=model_config, model_name=name, cluster=shape, **knobs)
    result = make_plan(req)
    if json_out:
        print(plan_json(result, name, source, req))
    else:
        render_plan(Console(), result, name, source, req)
    return result.fits
