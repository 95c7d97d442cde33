"""`onenode bench throughput`: onenode vs HF transformers on the same seeded workload, in one run.

HF runs static batches of 16 prompts sorted by length (left padding, each batch generating its
longest requested output); onenode runs continuous batching. Only requested tokens are counted.
"""

import time

import torch
from tqdm.auto import tqdm

from bench.workload import make_workload, total_tokens


def run_onenode(model: str, reqs, dtype: str, **llm_kwargs) -> float:
    from engine import LLM, SamplingParams

    llm = LLM(model, dtype=dtype, **llm_kwargs)
    params = [SamplingParams(temperature=0, max_tokens=r.output_len, ignore_eos=True)
              for r in reqs]
    prompts = [list(r.prompt_token_ids) for r in reqs]
    llm.generate(prompts[:2], params[:2], use_tqdm=False)  # warm-up
    start = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=True)
    elapsed = time.perf_counter() - start
    assert sum(len(o.outputs[0].token_ids) for o in outs) == sum(r.output_len for r in reqs)
    llm.shutdown()
    return elapsed


def load_hf(model: str, dtype: str):
    from transformers import AutoModelForCausalLM

    from engine.model_source import resolve_model

    src = resolve_model(model)
    kwargs = {"gguf_file": src.gguf_file} if src.gguf_file else {}
    torch_dtype = {"auto": None, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
                   "float32": torch.float32, "fp32": torch.float32}.get(dtype, torch.float32)
    hf = AutoModelForCausalLM.from_pretrained(str(src.path), dtype=torch_dtype or torch.float32,
                                              **kwargs)
    return hf.eval()


@torch.inference_mode()
def run_hf(hf, reqs, batch_size: int = 16) -> float:
    order = sorted(reqs, key=lambda r: len(r.prompt_token_ids))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    pad = hf.config.pad_token_id if hf.config.pad_token_id is not None else 0
    start = time.perf_counter()
    for batch in tqdm(batches, desc="HF batches"):
        width = max(len(r.prompt_token_ids) for r in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(batch):
            ids[i, width - len(r.prompt_token_ids):] = torch.tensor(r.prompt_token_ids)
            mask[i, width - len(r.prompt_token_ids):] = 1
        n = max(r.output_len for r in batch)
        hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                    do_sample=False, pad_token_id=pad)
    return time.perf_counter() - start


def throughput_bench(model: str, dtype: str = "float32", num_requests: int = 64,
                     seed: int = 0, skip_hf: bool = False, **llm_kwargs) -> dict:
    from engine.model_source import resolve_model

    vocab = resolve_model(model).model_config.vocab_size
    reqs = make_workload(num_requests, vocab_size=vocab, seed=seed)
    prompt_toks, out_toks = total_tokens(reqs)
    single = make_workload(1, (32, 32), (128, 128), vocab, seed + 1)
    res = {"model": model, "dtype": dtype, "num_requests": num_requests,
           "prompt_tokens": prompt_toks, "output_tokens": out_toks,
           "threads": torch.get_num_threads()}
    t = run_onenode(model, reqs, dtype, **llm_kwargs)
    res["onenode_output_tok_s"] = out_toks / t
    res["onenode_total_tok_s"] = (prompt_toks + out_toks) / t
    res["onenode_single_stream_tok_s"] = 128 / run_onenode(model, single, dtype, **llm_kwargs)
    from bench.roofline import gemm_peak_gflops, model_gflops

    peak = gemm_peak_gflops(torch.bfloat16 if dtype in ("bfloat16", "bf16") else torch.float32)
    params = resolve_model(model).model_config.num_params
    res["gemm_peak_gflops"] = peak
    res["roofline_fraction"] = model_gflops(params, prompt_toks + out_toks) / t / peak
    if not skip_hf:
        hf = load_hf(model, dtype)
        run_hf(hf, single[:1], 1)  # warm-up
        t_hf = run_hf(hf, reqs)
        res["hf_output_tok_s"] = out_toks / t_hf
        res["hf_single_stream_tok_s"] = 128 / run_hf(hf, single, 1)
        res["batched_ratio"] = res["onenode_output_tok_s"] / res["hf_output_tok_s"]
        res["single_stream_ratio"] = (res["onenode_single_stream_tok_s"] /
                                      res["hf_single_stream_tok_s"])
    return res
