"""`onenode bench throughput`: onenode vs HF transformers on the same seeded workload, in one run.

HF runs static batches of 16 prompts sorted by length (left padding, each batch generating its
longest requested output); onenode runs continuous batching. Only requested tokens are counted.
Each repeat runs onenode, then HF, on the same machine state (interleaved), so a ratio compares
neighbours in time; the report gives the median ratio and its min/max over repeats.

Warm (default): each repeat builds a fresh `LLM`, warms it with two prompts unrelated to the
workload, then times one `generate`. Cold (`cold=True`): no warm-up, the timed `generate` is the
first call of a fresh `LLM`, as in a script that loads and generates once. Single stream (one
32-token prompt, 128 output tokens) runs after the batched call.

A profile (bench/workload.py) names the workload's shape and sampling settings. HF also runs at
batch 64, which splits the cost of static batching from the kernels'. `peer="vllm"` adds vLLM's
CPU backend (bench/vllm_peer.py) to every round, on the same token ids and settings.
"""

import statistics
import time

import torch
from tqdm.auto import tqdm

from bench.rss import PeakRss
from bench.workload import make_workload, profile_workload, total_tokens

SINGLE_OUT = 128


def sampling_params_kwargs(sampling: dict, max_tokens: int, seed: int) -> dict:
    """Random profiles seed every request, so reruns draw the same tokens."""
    kw = dict(sampling, max_tokens=max_tokens, ignore_eos=True)
    if kw.get("temperature", 1.0) > 0:
        kw["seed"] = seed
    return kw


def _generate_s(llm, reqs, use_tqdm: bool = False, sampling: dict | None = None,
                seed: int = 0) -> float:
    from engine import SamplingParams

    sampling = sampling or {"temperature": 0.0}
    params = [SamplingParams(**sampling_params_kwargs(sampling, r.output_len, seed + i))
              for i, r in enumerate(reqs)]
    prompts = [list(r.prompt_token_ids) for r in reqs]
    start = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=use_tqdm)
    elapsed = time.perf_counter() - start
    assert sum(len(o.outputs[0].token_ids) for o in outs) == sum(r.output_len for r in reqs)
    return elapsed


def run_onenode(model: str, reqs, single, dtype: str, cold: bool, sampling: dict | None = None,
                **llm_kwargs) -> dict:
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
            batched = _generate_s(llm, reqs, use_tqdm=True, sampling=sampling)
        run = {"load_s": load_s, "batched_s": batched,
               "peak_rss_mib": rss.peak / 2**20,
               "rss_growth_per_request_mib": (rss.peak - rss.start) / 2**20 / len(reqs)}
        run.update(_expert_load(llm))  # after the batched run, before the single stream
        run["single_s"] = _generate_s(llm, single, sampling=sampling)
        return run
    finally:
        llm.shutdown()


def _expert_load(llm) -> dict:
    """MoE models: (token, expert) pairs per EP (or TP) rank since start-up (warm-up included,
    a few dozen tokens) and their imbalance max / mean, as `/metrics` exports them."""
    stats = llm.engine.stats()
    if "expert_tokens" not in stats:
        return {}
    return {"expert_tokens": stats["expert_tokens"], "expert_imbalance": stats["expert_imbalance"]}


def _torch_dtype(dtype: str) -> torch.dtype:
    """The bench compares float32 (default) or bfloat16, on both sides."""
    return torch.bfloat16 if dtype in ("bfloat16", "bf16") else torch.float32


def load_hf(model: str, dtype: str, device: str = "cpu", experts: str | None = None):
    """`experts`: HF's MoE implementation (transformers v5: "grouped_mm", its default where
    torch has one, or "eager", the per-expert Python loop); None: HF's choice."""
    from transformers import AutoModelForCausalLM

    from engine.model_source import resolve_model

    src = resolve_model(model)
    kwargs = {"gguf_file": src.gguf_file} if src.gguf_file else {}
    if experts is not None:
        kwargs["experts_implementation"] = experts
    hf = AutoModelForCausalLM.from_pretrained(str(src.path), dtype=_torch_dtype(dtype), **kwargs)
    return hf.eval().to(device)


HF_SAMPLING = ("temperature", "top_p", "top_k", "repetition_penalty")  # frequency: none in HF


def hf_generate_kwargs(sampling: dict | None) -> dict:
    kw = {k: v for k, v in (sampling or {}).items() if k in HF_SAMPLING}
    kw["do_sample"] = kw.get("temperature", 0.0) > 0
    if not kw["do_sample"]:
        kw.pop("temperature", None)
    return kw


@torch.inference_mode()
def run_hf(hf, reqs, batch_size: int = 16, sampling: dict | None = None) -> float:
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
                    max_new_tokens=n, min_new_tokens=n, pad_token_id=pad,
                    **hf_generate_kwargs(sampling))
    if hf.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "all": values}


def throughput_bench(model: str, dtype: str = "float32", num_requests: int | None = None,
                     seed: int = 0, skip_hf: bool = False, cold: bool = False,
                     repeats: int = 1, device: str = "cpu", profile: str = "default",
                     peer: str | None = None, hf_experts: str | None = None,
                     **llm_kwargs) -> dict:
    from engine.model_source import resolve_model

    src = resolve_model(model)
    cfg = src.model_config
    prof, reqs = profile_workload(profile, cfg.vocab_size, num_requests, seed)
    sampling = prof.sampling_kwargs
    prompt_toks, out_toks = total_tokens(reqs)
    single = make_workload(1, (32, 32), (SINGLE_OUT, SINGLE_OUT), cfg.vocab_size, seed + 1)
    if cfg.is_moe and hf_experts is None:
        hf_experts = "eager"  # HF's per-expert loop, the baseline issue 19 names
    hf = None if skip_hf else load_hf(model, dtype, device, hf_experts)
    if hf is not None and not cold:
        run_hf(hf, single, 1)  # warm-up
    peer_dir = _peer_dir(peer, src, dtype)
    runs = []
    for _ in range(repeats):
        run = run_onenode(model, reqs, single, dtype, cold, sampling, device=device,
                          **llm_kwargs)
        if hf is not None:
            run["hf_batched_s"] = run_hf(hf, reqs, sampling=sampling)
            run["hf_batched64_s"] = run_hf(hf, reqs, 64, sampling=sampling)
            run["hf_single_s"] = run_hf(hf, single, 1, sampling=sampling)
        if peer_dir is not None:
            from bench.vllm_peer import run_offline

            peer_run = run_offline(peer_dir, reqs, single, sampling, dtype,
                                   torch.get_num_threads(), seed)
            run.update({f"vllm_{k}": v for k, v in peer_run.items()})
        runs.append(run)
    res = {"model": model, "dtype": dtype, "device": device, "num_requests": len(reqs),
           "profile": profile, "sampling": sampling, "peer": peer, "llm_kwargs": llm_kwargs,
           "hf_experts": getattr(hf.config, "_experts_implementation", None)
           if hf is not None and cfg.is_moe else None,
           "cold": cold, "repeats": repeats, "prompt_tokens": prompt_toks,
           "output_tokens": out_toks, "threads": torch.get_num_threads(), "runs": runs}
    res.update(_summary(runs, prompt_toks, out_toks, skip_hf))
    res.update(peer_summary(runs, out_toks))
    from engine.model_params import num_active_params

    # A token reads (and multiplies by) its active parameters: top-k experts, not all of them.
    res.update(_roofline(num_active_params(cfg), dtype, device, prompt_toks + out_toks,
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
    if "expert_imbalance" in runs[0]:
        res["expert_imbalance"] = spread([r["expert_imbalance"] for r in runs])
    if not skip_hf:
        res["hf_output_tok_s"] = spread([out_toks / r["hf_batched_s"] for r in runs])
        res["hf_single_stream_tok_s"] = spread([SINGLE_OUT / r["hf_single_s"] for r in runs])
        res["batched_ratio"] = spread([r["hf_batched_s"] / r["batched_s"] for r in runs])
        res["single_stream_ratio"] = spread([r["hf_single_s"] / r["single_s"] for r in runs])
    return res


def _peer_dir(peer: str | None, src, dtype: str):
    if peer is None:
        return None
    if peer != "vllm":
        from onenode.errors import ConfigError

        raise ConfigError(f"--peer {peer!r} is not known; use --peer vllm")
    from bench.vllm_peer import hf_dir, peer_python

    peer_python()  # refuse before any timing when the venv is missing
    return hf_dir(src.path, src.gguf_file, dtype)


def peer_summary(runs: list[dict], out_toks: int) -> dict:
    """Per-round ratios (the same round's seconds, so neighbours in time are compared)."""
    res = {}
    if runs and "hf_batched64_s" in runs[0]:
        res["hf64_output_tok_s"] = spread([out_toks / r["hf_batched64_s"] for r in runs])
        res["batched_ratio_hf64"] = spread([r["hf_batched64_s"] / r["batched_s"] for r in runs])
    if runs and "vllm_batched_s" in runs[0]:
        res["vllm_output_tok_s"] = spread([out_toks / r["vllm_batched_s"] for r in runs])
        res["vllm_single_stream_tok_s"] = spread([SINGLE_OUT / r["vllm_single_s"] for r in runs])
        res["batched_ratio_vllm"] = spread([r["vllm_batched_s"] / r["batched_s"] for r in runs])
        res["single_stream_ratio_vllm"] = spread([r["vllm_single_s"] / r["single_s"]
                                                  for r in runs])
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
