"""`onenode plan`: which TP x PP layout, how many KV blocks, and the commands to start it.

A thin edge: parse, find the model's shape (model_shape.py), call the pure planner (plan.py),
render (report.py). The root app registers it with `app.command("plan")(plan)`.

`--cluster` reads the live cluster's shape with the healthcheck's probes. The engine never imports
healthcheck, so the root app hands that reader in (`set_live_cluster_reader`).
"""

from collections.abc import Callable
from dataclasses import dataclass

import typer
from rich.console import Console

from engine.config import EngineConfig
from engine.planner.model_shape import load_model_shape
from engine.planner.plan import PlanRequest, make_plan
from engine.planner.report import plan_json, render_plan
from engine.planner.strategy import ClusterShape
from onenode.errors import ConfigError
from onenode.options import check_ranges, cli_parameters, command, from_cli, option
from onenode.units import parse_bytes

_live_cluster_reader: Callable[[str], ClusterShape] | None = None


def set_live_cluster_reader(reader: Callable[[str], ClusterShape]) -> None:
    global _live_cluster_reader
    _live_cluster_reader = reader


# The engine knobs that change a plan; their flags come from EngineConfig's fields.
ENGINE_KNOBS = ("gpu_memory_utilization", "max_model_len", "dtype", "block_size", "max_num_seqs",
                "max_num_batched_tokens", "kv_cache_space_gib")


@dataclass(frozen=True, slots=True)
class PlanFlags:
    """The flags only `onenode plan` has (the cluster's shape, targets, output)."""
    model: str = option(help="Local config.json, model directory or GGUF file, or a known model "
                             "(e.g. Llama-2-70B, DeepSeek-V3, Qwen3-235B-A22B)")
    nodes: int = option(1, help="Nodes in the cluster", range=(1, None))
    gpus_per_node: int = option(1, help="GPUs per node", range=(1, None))
    gpu_memory: str = option("80GiB", help="Memory of one GPU, e.g. 80GiB")
    target_tokens: int | None = option(
        None, range=(1, None), help="Say how many GPUs/nodes give this many KV tokens")
    target_concurrency: float | None = option(
        None, range=(0, None),
        help="Say how many GPUs/nodes give this many max_model_len requests at once")
    cluster: bool = option(False, flags=("--cluster",),
                           help="Read nodes, GPUs and GPU memory from the live Ray cluster")
    address: str = option("auto", help="Ray address for --cluster")
    json_out: bool = option(False, flags=("--json",), help="Print one JSON object")

    def __post_init__(self):
        check_ranges(self)


def _plan(**values) -> None:
    flags = from_cli(PlanFlags, values)
    knobs = {k: values[k] for k in (*ENGINE_KNOBS, "target_tokens", "target_concurrency")}
    if flags.cluster:
        if _live_cluster_reader is None:
            raise ConfigError("--cluster needs the healthcheck's probes; run it as `onenode plan`")
        shape = _live_cluster_reader(flags.address)
    else:
        shape = ClusterShape(flags.nodes, flags.gpus_per_node,
                             parse_bytes(flags.gpu_memory, "GiB", "--gpu-memory"))
    if not run_plan(flags.model, shape, knobs, flags.json_out):
        raise typer.Exit(1)


plan = command(
    "plan", "Plan TP x PP and predict # GPU blocks, max tokens and concurrency before launching.",
    [*cli_parameters(PlanFlags, only=("model", "nodes", "gpus_per_node", "gpu_memory")),
     *cli_parameters(EngineConfig, only=ENGINE_KNOBS),
     *cli_parameters(PlanFlags, exclude=("model", "nodes", "gpus_per_node", "gpu_memory"))],
    _plan)


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
