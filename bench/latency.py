"""`onenode bench latency`: per-token decode latency and batched throughput for several parallel
layouts (uni, TP, PP; mp on one node or ray across the cluster), with ratios against uni."""

import time

from bench.workload import make_workload, total_tokens

DEFAULT_LAYOUTS = ("uni", "tp2-mp", "pp3-mp")


def parse_layout(name: str) -> dict:
    """'uni' | 'tp2-mp' | 'pp3-ray' | 'tp2pp2-mp' -> LLM kwargs."""
    if name == "uni":
        return {"distributed_executor_backend": "uni"}
    shape, backend = name.split("-")
    tp = pp = 1
    for part in shape.replace("pp", " pp").split():
        if part.startswith("tp"):
            tp = int(part[2:])
        elif part.startswith("pp"):
            pp = int(part[2:])
    return {"tensor_parallel_size": tp, "pipeline_parallel_size": pp,
            "distributed_executor_backend": backend}


def measure(model: str, layout: str, num_requests: int, decode_tokens: int, **kwargs) -> dict:
    from engine import LLM, SamplingParams

    llm = LLM(model, **parse_layout(layout), **kwargs)
    vocab = llm.engine.model_config.vocab_size
    one = [list(make_workload(1, (32, 32), (1, 1), vocab, seed=7)[0].prompt_token_ids)]
    greedy = dict(temperature=0, ignore_eos=True)
    llm.generate(one, SamplingParams(max_tokens=4, **greedy), use_tqdm=False)  # warm-up
    t0 = time.perf_counter()
    llm.generate(one, SamplingParams(max_tokens=1, **greedy), use_tqdm=False)
    ttft = time.perf_counter() - t0
    t0 = time.perf_counter()
    llm.generate(one, SamplingParams(max_tokens=decode_tokens, **greedy), use_tqdm=False)
    per_token = (time.perf_counter() - t0 - ttft) / (decode_tokens - 1)
    reqs = make_workload(num_requests, vocab_size=vocab, seed=0)
    params = [SamplingParams(max_tokens=r.output_len, **greedy) for r in reqs]
    t0 = time.perf_counter()
    llm.generate([list(r.prompt_token_ids) for r in reqs], params, use_tqdm=True)
    elapsed = time.perf_counter() - t0
    llm.shutdown()
    return {"layout": layout, "ttft_s": ttft, "decode_ms_per_token": per_token * 1000,
            "batched_output_tok_s": total_tokens(reqs)[1] / elapsed}


def latency_bench(model: str, layouts=DEFAULT_LAYOUTS, num_requests: int = 64,
                  decode_tokens: int = 64, **kwargs) -> dict:
    rows = [measure(model, layout, num_requests, decode_tokens, **kwargs) for layout in layouts]
    base = next((r for r in rows if r["layout"] == "uni"), rows[0])
    for r in rows:
        r["latency_vs_uni"] = r["decode_ms_per_token"] / base["decode_ms_per_token"]
        r["throughput_vs_uni"] = r["batched_output_tok_s"] / base["batched_output_tok_s"]
    return {"model": model, "num_requests": num_requests, "rows": rows}
