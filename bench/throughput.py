"""`onenode bench throughput`: onenode vs HF transformers on the same seeded workload, in one run.

HF runs static batches of 16 prompts sorted by length (left padding, each batch generating its
longest requested output); onenode runs continuous batching. Only requested tokens are counted.
Each repeat runs onenode, then HF, on the same machine state (interleaved), so a ratio compares
neighbours in time; the report gives the median ratio and its min/max over repeats.

Warm (default): each repeat builds a fresh `LLM`, warms it with two prompts unrelated to the
workload, then times one `generate`. Cold (`cold=True`): no warm-up, the timed `generate` is the
first call of a fresh `LLM`, as in a script that loads and generates once. Single stream (one
32-token prompt, 128 output tokens) runs after the batched call.
"""

import statistics
import time

import torch
from tqdm.auto import tqdm

from bench.rss import PeakRss
from bench.workload import make_workload, total_tokens

SINGLE_OUT = 128


def _generate_s(llm, reqs, use_tqdm: bool = False) -> float:
    from engine import SamplingParams

    params = [SamplingParams(temperature=0, max_tokens=r.output_len, ignore_eos=True)
              for r in reqs]
    prompts = [list(r.prompt_token_ids) for r in reqs]
    start = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=use_tqdm)
    elapsed = time.perf_counter() - start
    assert sum(len(o.outputs[0].token_ids) for o in outs) == sum(r.output_len for r in reqs)
    return elapsed


def run_onenode(model: str, reqs, single, dtype: str, cold: bool, **llm_kwargs) -> dict:
    """Seconds for the batched workload and the single stream, on one fresh LLM."""
    from engine import LLM

    start = time.perf_counter()
    llm = LLM(model, dtype=dtype, **llm_kwargs)
    load_s = time.perf_counter() - start
    try:
        if not cold:
            warm = make_workload(2, (16, 16), (8, 8), llm.engine.model_config.vocab_size, 999)
            _generate_s(llm, warm)
        with PeakRss() as rss:
            batched = _generate_s(llm, reqs, use_tqdm=True)
        return {"load_s": load_s, "batched_s": batched, "single_s": _generate_s(llm, single),
                "peak_rss_mib": rss.peak / 2**20,
                "rss_growth_per_request_mib": (rss.peak - rss.start) / 2**20 / len(reqs)}
    finally:
        llm.shutdown()


def _torch_dtype(dtype: str) -> torch.dtype:
    """The bench compares float32 (default) or bfloat16, on both sides."""
    return torch.bfloat16 if dtype in ("bfloat16", "bf16") else torch.float32


def load_hf(model: str, dtype: str, device: str = "cpu"):
    from transformers import AutoModelForCausalLM

    from engine.model_source import resolve_model

    src = resolve_model(model)
    kwargs = {"gguf_file": src.gguf_file} if src.gguf_file else {}
    hf = AutoModelForCausalLM.from_pretrained(str(src.path), dtype=_torch_dtype(dtype), **kwargs)
    return hf.eval().to(device)


@torch.inference_mode()
def run_hf(hf, reqs, batch_size: int = 16) -> float:
    order = sorted(reqs, key=lambda r: len(r.prompt_token_ids))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    pad = hf.config.pad_token_id if hf.config.pad_token_id is not None else 0
    start = time.perf_counter()
    for batch in tqdm(batches, desc="HF batches", disable=len(batches) == 1):
        width = max(len(r.prompt_token_ids) for r in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(batch):
            ids[i, width - len(r.prompt_token_ids):] = torch.tensor(r.prompt_token_ids)
            mask[i, width - len(r.prompt_token_ids):] = 1
        n = max(r.output_len for r in batch)
        hf.generate(input_ids=ids.to(hf.device), attention_mask=mask.to(hf.device),
                    max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=pad)
    if hf.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "all": values}


def throughput_bench(model: str, dtype: str = "float32", num_requests: int = 64,
                     seed: int = 0, skip_hf: bool = False, cold: bool = False,
                     repeats: int = 1, device: str = "cpu", **llm_kwargs) -> dict:
    from engine.model_source import resolve_model

    cfg = resolve_model(model).model_config
    reqs = make_workload(num_requests, vocab_size=cfg.vocab_size, seed=seed)
    prompt_toks, out_toks = total_tokens(reqs)
    single = make_workload(1, (32, 32), (SINGLE_OUT, SINGLE_OUT), cfg.vocab_size, seed + 1)
    hf = None if skip_hf else load_hf(model, dtype, device)
    if hf is not None and not cold:
        run_hf(hf, single, 1)  # warm-up
    runs = []
    for _ in range(repeats):
        run = run_onenode(model, reqs, single, dtype, cold, device=device, **llm_kwargs)
        if hf is not None:
            run["hf_batched_s"] = run_hf(hf, reqs)
            run["hf_single_s"] = run_hf(hf, single, 1)
        runs.append(run)
    res = {"model": model, "dtype": dtype, "device": device, "num_requests": num_requests,
           "cold": cold, "repeats": repeats, "prompt_tokens": prompt_toks,
           "output_tokens": out_toks, "threads": torch.get_num_threads(), "runs": runs}
    res.update(_summary(runs, prompt_toks, out_toks, skip_hf))
    res.update(_roofline(cfg.num_params, dtype, device, prompt_toks + out_toks,
                         statistics.median(r["batched_s"] for r in runs),
                         res["onenode_single_stream_tok_s"]["median"]))
    return res


def _summary(runs: list[dict], prompt_toks: int, out_toks: int, skip_hf: bool) -> dict:
    res = {"onenode_output_tok_s": spread([out_toks / r["batched_s"] for r in runs]),
           "onenode_total_tok_s": spread([(prompt_toks + out_toks) / r["batched_s"]
                                          for r in runs]),
           "onenode_single_stream_tok_s": spread([SINGLE_OUT / r["single_s"] for r in runs]),
           "onenode_load_s": spread([r["load_s"] for r in runs]),
           "onenode_peak_rss_mib": spread([r["peak_rss_mib"] for r in runs]),
           "onenode_rss_growth_per_request_mib": spread([r["rss_growth_per_request_mib"]
                                                         for r in runs])}
    if not skip_hf:
        res["hf_output_tok_s"] = spread([out_toks / r["hf_batched_s"] for r in runs])
        res["hf_single_stream_tok_s"] = spread([SINGLE_OUT / r["hf_single_s"] for r in runs])
        res["batched_ratio"] = spread([r["hf_batched_s"] / r["batched_s"] for r in runs])
        res["single_stream_ratio"] = spread([r["hf_single_s"] / r["single_s"] for r in runs])
    return res


def _roofline(num_params: int, dtype: str, device: str, tokens: int, seconds: float,
              single_tok_s: float) -> dict:
    """Batched: FLOPs against the GEMM peak. Single stream (batch-1 decode): weight bytes read
    per second against the memory bandwidth, the HBM roofline on a GPU."""
    from bench.roofline import (
        decode_bandwidth_gbs,
        gemm_peak_gflops,
        memory_bandwidth_gbs,
        model_gflops,
    )

    torch_dtype = _torch_dtype(dtype)
    peak = gemm_peak_gflops(torch_dtype, device=device)
    bandwidth = memory_bandwidth_gbs(device)
    decode = decode_bandwidth_gbs(num_params, torch_dtype.itemsize, single_tok_s)
    return {"gemm_peak_gflops": peak,
            "roofline_fraction": model_gflops(num_params, tokens) / seconds / peak,
            "memory_bandwidth_gbs": bandwidth, "single_stream_weight_gbs": decode,
            "single_stream_memory_roofline_fraction": decode / bandwidth}
