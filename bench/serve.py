"""`onenode bench serve`: a bounded streaming load against a running OpenAI-compatible server.

For each concurrency level the same seeded workload (prompt token ids and output lengths from
bench/workload.py, so it matches `onenode bench throughput`) is sent as streaming
completions with `ignore_eos`; the client measures throughput, time to first token, inter-token
latency and end-to-end latency. Talks only to the given URL.
"""

import asyncio
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp

from bench.workload import BenchRequest, make_workload


@dataclass(frozen=True, slots=True)
class ServeBenchConfig:
    url: str
    num_requests: int = 200
    concurrency: tuple[int, ...] = (1, 8, 32)
    prompt_len: tuple[int, int] = (32, 512)
    output_len: tuple[int, int] = (16, 128)
    vocab_size: int = 32000
    seed: int = 0
    model: str | None = None
    api_key: str | None = None
    timeout_s: float = 600.0


@dataclass
class RequestResult:
    ok: bool
    ttft_s: float = 0.0
    e2e_s: float = 0.0
    itls_s: tuple[float, ...] = ()
    prompt_tokens: int = 0
    output_tokens: int = 0
    error: str = ""


def percentiles(values, scale: float = 1.0) -> dict:
    """p50/p90/p99/mean of `values` times `scale` (nearest-rank; empty -> zeros)."""
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "mean": 0.0}
    data = sorted(v * scale for v in values)

    def rank(p: float) -> float:
        return data[min(len(data) - 1, max(0, math.ceil(p / 100 * len(data)) - 1))]

    return {"p50": rank(50), "p90": rank(90), "p99": rank(99), "mean": sum(data) / len(data)}


def summarize(results: list[RequestResult], concurrency: int, duration_s: float) -> dict:
    ok = [r for r in results if r.ok]
    out_tokens = sum(r.output_tokens for r in ok)
    prompt_tokens = sum(r.prompt_tokens for r in ok)
    return {
        "concurrency": concurrency, "duration_s": duration_s, "completed": len(ok),
        "failed": len(results) - len(ok),
        "errors": sorted({r.error for r in results if not r.ok})[:5],
        "prompt_tokens": prompt_tokens, "output_tokens": out_tokens,
        "output_tok_s": out_tokens / duration_s if duration_s else 0.0,
        "total_tok_s": (out_tokens + prompt_tokens) / duration_s if duration_s else 0.0,
        "requests_s": len(ok) / duration_s if duration_s else 0.0,
        "ttft_ms": percentiles([r.ttft_s for r in ok], 1000),
        "itl_ms": percentiles([x for r in ok for x in r.itls_s], 1000),
        "e2e_s": percentiles([r.e2e_s for r in ok]),
    }


async def _one(session: aiohttp.ClientSession, cfg: ServeBenchConfig, model: str,
               req: BenchRequest) -> RequestResult:
    body = {"model": model, "prompt": list(req.prompt_token_ids), "max_tokens": req.output_len,
            "temperature": 0.0, "ignore_eos": True, "stream": True,
            "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    stamps: list[float] = []
    usage = None
    try:
        async with session.post(f"{cfg.url}/v1/completions", json=body) as resp:
            if resp.status != 200:
                return RequestResult(False, error=f"HTTP {resp.status}")
            async for raw in resp.content:
                line = raw.decode().strip()
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    return RequestResult(False, error=chunk["error"].get("message", "error"))
                if any(c.get("text") for c in chunk.get("choices") or ()):
                    stamps.append(time.perf_counter())
                usage = chunk.get("usage") or usage
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return RequestResult(False, error=type(exc).__name__)
    end = time.perf_counter()
    if not stamps or usage is None:
        return RequestResult(False, error="no tokens or no usage in the stream")
    itls = tuple(b - a for a, b in zip(stamps, stamps[1:]))
    return RequestResult(True, stamps[0] - start, end - start, itls, usage["prompt_tokens"],
                         usage["completion_tokens"])


async def _level(cfg: ServeBenchConfig, model: str, workload: list[BenchRequest],
                 concurrency: int) -> dict:
    headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
    timeout = aiohttp.ClientTimeout(total=cfg.timeout_s)
    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout,
                                     connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        await _one(s, cfg, model, BenchRequest(workload[0].prompt_token_ids[:8], 2))  # warm-up

        async def bounded(req: BenchRequest) -> RequestResult:
            async with limit:
                return await _one(s, cfg, model, req)

        start = time.perf_counter()
        results = await asyncio.gather(*(bounded(r) for r in workload))
        return summarize(list(results), concurrency, time.perf_counter() - start)


async def _served_model(cfg: ServeBenchConfig) -> str:
    if cfg.model:
        return cfg.model
    headers = {"Authorization": f"Bearer {cfg.api_key}"} if cfg.api_key else {}
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.get(f"{cfg.url}/v1/models") as resp:
            resp.raise_for_status()
            return (await resp.json())["data"][0]["id"]


def serve_bench(cfg: ServeBenchConfig) -> dict:
    workload = make_workload(cfg.num_requests, cfg.prompt_len, cfg.output_len, cfg.vocab_size,
                             cfg.seed)

    async def main() -> dict:
        model = await _served_model(cfg)
        runs = [await _level(cfg, model, workload, c) for c in cfg.concurrency]
        return {"model": model, "config": {k: v for k, v in asdict(cfg).items()
                                           if k != "api_key"}, "runs": runs}

    return asyncio.run(main())


def write_serve_report(results: dict, out_dir: str | Path, name: str = "serve") -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / f"{name}.json", out / f"{name}.png"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=True))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    labels = [str(r["concurrency"]) for r in runs]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    bars = ax1.bar(labels, [r["output_tok_s"] for r in runs], color="#4C72B0")
    ax1.bar_label(bars, fmt="%.1f")
    ax1.set_xlabel("concurrency")
    ax1.set_ylabel("output tokens/s")
    for key, style in (("ttft_ms", "o-"), ("itl_ms", "s-")):
        for pct in ("p50", "p99"):
            ax2.plot(labels, [r[key][pct] for r in runs], style, label=f"{key[:-3]} {pct}",
                     alpha=1.0 if pct == "p50" else 0.5)
    ax2.set_xlabel("concurrency")
    ax2.set_ylabel("ms")
    ax2.set_yscale("log")
    ax2.legend()
    fig.suptitle(f"onenode serve: {results['model']}")
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return json_path, png_path
