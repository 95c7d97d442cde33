"""`onenode bench ...`: thin Typer commands over the benchmarks in this package (bench/)."""

from pathlib import Path
from typing import Annotated, Optional

import typer

bench_app = typer.Typer(help="Benchmarks: JSON + PNG results under --out.", no_args_is_help=True)


@bench_app.command("throughput")
def throughput(
    model: Annotated[Optional[str], typer.Option(help="a .gguf file or an HF model directory (default: the demo SmolLM2)")] = None,
    dtype: Annotated[str, typer.Option(help="float32 or bfloat16 (both sides)")] = "float32",
    num_requests: Annotated[int, typer.Option(help="0: the profile's own count")] = 0,
    cold: Annotated[bool, typer.Option(help="no warm-up: time the first generate of a fresh LLM")] = False,
    repeats: Annotated[int, typer.Option(help="interleaved onenode/HF rounds; median and min/max")] = 1,
    skip_hf: Annotated[bool, typer.Option(help="only onenode")] = False,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda (both sides)")] = "auto",
    profile: Annotated[str, typer.Option(help="workload: default | chat | long-prompt | long-output | penalties")] = "default",
    peer: Annotated[Optional[str], typer.Option(help="also run vllm (vLLM's CPU backend; `make bench-peers`)")] = None,
    tensor_parallel_size: Annotated[int, typer.Option("--tensor-parallel-size", "-tp", help="onenode's TP (experts sliced, or split with --enable-expert-parallel)")] = 1,
    enable_expert_parallel: Annotated[bool, typer.Option(help="MoE: whole experts split over the TP ranks")] = False,
    distributed_executor_backend: Annotated[Optional[str], typer.Option(help="mp | ray (default: uni at TP 1, else mp)")] = None,
    hf_experts: Annotated[Optional[str], typer.Option(help="MoE: HF's experts implementation, eager (its per-expert loop, the default here) | grouped_mm (HF's own default, as fast as onenode's layer on CPU)")] = None,
    out: Annotated[Path, typer.Option(help="where JSON/PNG go")] = Path("bench/results"),
):
    """onenode vs HF transformers (batch 16 and 64) and optionally vLLM on one seeded workload
    (default: 64 requests, prompts 32-512, outputs 16-128, greedy, ignore_eos) plus single-stream
    tokens/s; prints the median per-round ratios."""
    from bench.report import write_spread_report
    from bench.throughput import throughput_bench
    from engine.demo_model import fetch_demo

    if repeats < 1:
        raise typer.BadParameter("--repeats must be >= 1")
    device = _device(device)
    model = model or str(fetch_demo())
    res = throughput_bench(model, dtype=dtype, num_requests=num_requests or None,
                           skip_hf=skip_hf, cold=cold, repeats=repeats, device=device,
                           profile=profile, peer=peer, hf_experts=hf_experts,
                           **_layout(tensor_parallel_size, enable_expert_parallel,
                                     distributed_executor_backend))
    keys = ["onenode_output_tok_s", "vllm_output_tok_s", "hf_output_tok_s", "hf64_output_tok_s",
            "onenode_single_stream_tok_s", "vllm_single_stream_tok_s", "hf_single_stream_tok_s"]
    series = {k.replace("_output_tok_s", " batched").replace("_single_stream_tok_s", " single"):
              res[k] for k in keys if k in res}
    name = f"throughput-{profile}-{dtype}-{'cold' if cold else 'warm'}"
    if tensor_parallel_size > 1:
        name += f"-{'ep' if enable_expert_parallel else 'tp'}{tensor_parallel_size}"
    paths = write_spread_report(res, out, name, series, "output tokens/s")
    _print(res, paths)
    _print_throughput_summary(res)


def _layout(tp: int, ep: bool, backend: Optional[str]) -> dict:
    """LLM kwargs of the parallel layout; none at the default (uni), as before."""
    if tp < 1:
        raise typer.BadParameter("--tensor-parallel-size must be >= 1")
    if tp == 1 and not ep and backend is None:
        return {}
    return {"tensor_parallel_size": tp, "enable_expert_parallel": ep,
            "distributed_executor_backend": backend or ("mp" if tp > 1 else "uni")}


@bench_app.command("moe-model")
def moe_model(path: Annotated[Optional[Path], typer.Option(help="default: ~/.cache/onenode/bench/qwen3-moe-0.5b-random")] = None):
    """Write (once) the MoE bench model, a random-weight Qwen3-MoE of 0.52B parameters built
    offline from transformers' Qwen3MoeConfig, and print its path for `throughput --model`."""
    from bench.moe_model import write_moe_model

    typer.echo(write_moe_model(path))


def _print_throughput_summary(res: dict) -> None:
    for key in ("batched_ratio", "single_stream_ratio", "batched_ratio_hf64",
                "batched_ratio_vllm", "single_stream_ratio_vllm"):
        if key in res:
            r = res[key]
            typer.echo(f"{key}: {r['median']:.2f}x (min {r['min']:.2f}x, max {r['max']:.2f}x)")
    if "expert_imbalance" in res:
        r = res["expert_imbalance"]
        typer.echo(f"expert imbalance (max / mean over ranks): {r['median']:.3f} "
                   f"(min {r['min']:.3f}, max {r['max']:.3f})")
    rss, per = res["onenode_peak_rss_mib"], res["onenode_rss_growth_per_request_mib"]
    typer.echo(f"onenode peak RSS: {rss['median']:.0f} MiB; growth during the batched run "
               f"{per['median']:.2f} MiB per request")
    typer.echo(f"single stream reads the weights at {res['single_stream_weight_gbs']:.1f} GB/s: "
               f"{res['single_stream_memory_roofline_fraction']:.0%} of the measured "
               f"{res['memory_bandwidth_gbs']:.1f} GB/s ({res['device']})")


@bench_app.command("latency")
def latency(
    model: Annotated[Optional[str], typer.Option(help="model path (default: the demo SmolLM2)")] = None,
    layouts: Annotated[str, typer.Option(help="comma list: uni,tp3-mp,pp3-mp,pp3-ray,...")] = "uni,tp3-mp,pp3-mp",
    num_requests: Annotated[int, typer.Option()] = 64,
    kv_cache_space_gib: Annotated[float, typer.Option()] = 1.0,
    out: Annotated[Path, typer.Option()] = Path("bench/results"),
):
    """Per-token decode latency and batched throughput per parallel layout, vs uni."""
    from bench.latency import latency_bench
    from bench.report import write_report
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

    from bench.cluster_up import cluster_up_bench

    typer.echo(json.dumps(cluster_up_bench(nodes, repeats), indent=2))


@bench_app.command("recovery")
def recovery(model: Annotated[Optional[str], typer.Option(
        help="model path inside the containers (default: the demo SmolLM2)")] = None,
             timeout: Annotated[float, typer.Option(help="give up per crash after")] = 600.0,
             image: Annotated[str, typer.Option()] = "onenode:latest"):
    """Seconds from a worker crash and from a head crash (SIGKILL of the container's main
    process) to the first correct answer again, 3 simulated nodes, PP=3."""
    import json

    from bench.recovery import recovery_bench
    from engine.demo_model import container_model_dir, fetch_demo

    if model is None:
        fetch_demo()  # into the HF_HOME that `cluster up` mounts by default
        model = container_model_dir()
    typer.echo(json.dumps(recovery_bench(model, timeout, image), indent=2))


@bench_app.command("chaos")
def chaos(model: Annotated[Optional[str], typer.Option(
        help="model path inside the containers (default: the demo SmolLM2)")] = None,
          faults: Annotated[str, typer.Option(
              help="comma list of sigstop,blip,partition,lost,token")] = "sigstop,blip,partition,lost,token",
          step_timeout: Annotated[float, typer.Option(help="the server's --step-timeout")] = 10.0,
          replan_after: Annotated[float, typer.Option(help="the server's --replan-after")] = 30.0,
          image: Annotated[str, typer.Option()] = "onenode:latest",
          out: Annotated[Path, typer.Option(help="where JSON/PNG go")] = Path("bench/results")):
    """Each fault of docs/reliability.md under 4 streaming clients, PP=3 over 3 simulated nodes:
    seconds to detect, to serve again (or degraded), requests completed/failed/hung/500."""
    from bench.chaos import FAULTS, chaos_bench, table
    from bench.report import write_report
    from engine.demo_model import container_model_dir, fetch_demo

    chosen = [f.strip() for f in faults.split(",") if f.strip()]
    bad = [f for f in chosen if f not in FAULTS]
    if bad:
        raise typer.BadParameter(f"--faults {','.join(bad)}: use some of {','.join(FAULTS)}")
    if model is None:
        fetch_demo()  # into the HF_HOME that `cluster up` mounts by default
        model = container_model_dir()
    res = chaos_bench(model, image, chosen, step_timeout, replan_after)
    bars = {f: r["serve_s"] or 0.0 for f, r in res["faults"].items()}
    paths = write_report(res, out, "chaos", bars, "seconds to serve again (or degraded)")
    _print(res, paths)
    typer.echo(table(res))


@bench_app.command("serve")
def bench_serve(
    url: Annotated[Optional[str], typer.Option(help="server base URL, e.g. http://127.0.0.1:8000")] = None,
    peer: Annotated[Optional[str], typer.Option(help="vllm: start onenode and vLLM's servers here and load both with vLLM's `bench serve`")] = None,
    num_requests: Annotated[int, typer.Option()] = 200,
    concurrency: Annotated[str, typer.Option(help="comma list of concurrency levels")] = "1,8,32",
    prompt_len: Annotated[str, typer.Option(help="min,max prompt tokens")] = "32,512",
    output_len: Annotated[str, typer.Option(help="min,max output tokens")] = "16,128",
    vocab_size: Annotated[int, typer.Option(help="prompt token ids are drawn below this")] = 32000,
    seed: Annotated[int, typer.Option()] = 0,
    model: Annotated[Optional[str], typer.Option(help="default: the server's model")] = None,
    api_key: Annotated[Optional[str], typer.Option(envvar="ONENODE_API_KEY")] = None,
    out: Annotated[Path, typer.Option(help="where JSON/PNG go")] = Path("bench/results"),
    name: Annotated[str, typer.Option(help="result file name")] = "serve",
):
    """Bounded streaming load against a running server: throughput, TTFT and ITL percentiles.
    With --peer vllm: vLLM's `bench serve` against `onenode serve` and vLLM's server."""
    import json

    if peer is not None:
        _peer_serve(peer, model, concurrency, out, name)
        return
    if url is None:
        raise typer.BadParameter("give --url of a running server, or --peer vllm")
    from bench.serve import ServeBenchConfig, serve_bench, write_serve_report

    cfg = ServeBenchConfig(url=url, num_requests=num_requests,
                           concurrency=tuple(int(c) for c in concurrency.split(",")),
                           prompt_len=_pair(prompt_len), output_len=_pair(output_len),
                           vocab_size=vocab_size, seed=seed, model=model, api_key=api_key)
    res = serve_bench(cfg)
    paths = write_serve_report(res, out, name)
    typer.echo(json.dumps(res, indent=2, sort_keys=True))
    typer.echo(f"wrote {paths[0]} and {paths[1]}")


def _peer_serve(peer: str, model: Optional[str], concurrency: str, out: Path, name: str) -> None:
    import json

    import torch

    from bench.report import write_report
    from bench.vllm_serve import ServeLoad, peer_serve_bench
    from engine.demo_model import fetch_demo

    if peer != "vllm":
        raise typer.BadParameter(f"--peer {peer!r}: use --peer vllm")
    load = ServeLoad(concurrency=tuple(int(c) for c in concurrency.split(",")))
    res = peer_serve_bench(model or str(fetch_demo()), "float32", torch.get_num_threads(), load)
    bars = {f"{side} c={c}": res[side][c]["output_tok_s"]
            for c in load.concurrency for side in ("onenode", "vllm")}
    paths = write_report(res, out, f"{name}-vs-vllm", bars, "output tokens/s")
    typer.echo(json.dumps(res, indent=2, sort_keys=True))
    typer.echo(f"wrote {paths[0]} and {paths[1]}")


def _device(name: str) -> str:
    import torch

    from engine.parallel.distributed_init import pick_device

    if name == "auto":
        return pick_device(name)
    if name not in ("cpu", "cuda"):
        raise typer.BadParameter(f"--device {name!r}: use auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise typer.BadParameter("--device cuda: no CUDA device here (torch sees none)")
    return name


def _pair(text: str) -> tuple[int, int]:
    lo, hi = (int(x) for x in text.split(","))
    return lo, hi


def _print(res: dict, paths) -> None:
    import json

    typer.echo(json.dumps(res, indent=2, sort_keys=True))
    typer.echo(f"wrote {paths[0]} and {paths[1]}")
