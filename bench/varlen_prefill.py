"""Microbenchmark of prefill attention, one layer of SmolLM2-135M's shape (9 heads, 3 KV heads,
head_dim 64): a step's prefill sequences one SDPA call each (as before the varlen prefill), all
in one call (either layout), and cut by the cost model (engine/layers/varlen_prefill.py, what the
engine runs). Interleaved repeats; prints the median and minimum milliseconds per layer call
(CPU time with --threads 1, wall time otherwise).

    python -m bench.varlen_prefill [--device cuda] [--repeats 9] [--threads 2]
    python -m bench.varlen_prefill --profile long-prompt --num-requests 6 --threads 1

With --profile, the same three modes end to end instead: one `LLM` of the demo model (prefix
caching off, so rounds do not reuse each other's blocks) generating a bench profile's requests,
the modes interleaved; seconds per round, and whether the greedy tokens stayed the same.
"""

import argparse
import random
import statistics
import time

import torch

from engine.layers import varlen_prefill
from engine.layers.attention import PagedAttention
from engine.layers.attention_metadata import AttentionMetadata
from engine.layers.varlen_prefill import Costs

HEADS, KV_HEADS, HEAD_DIM, BLOCK = 9, 3, 64, 16
_rng = random.Random(0)
# name: [(new tokens, cached tokens)], shaped after the bench profiles' steps
STEPS = {
    "default (30 prompts 32-512)": [(_rng.randrange(32, 513), 0) for _ in range(30)],
    "served (32 prompts of 256)": [(256, 0)] * 32,
    "short (16 prompts 8-64)": [(_rng.randrange(8, 65), 0) for _ in range(16)],
    "long-prompt (3 of 2-4k, one chunked)": [(3000, 0), (2500, 1500), (2692, 0)],
    "prefix hits (8 x 16 new after 480)": [(16, 480)] * 8 + [(300, 0)],
    "one long, many short": [(3000, 0)] + [(_rng.randrange(16, 129), 0) for _ in range(20)],
}
MODES = {"per sequence": Costs(call=0, row=0, causal=0.5),
         "one call": Costs(call=1e15, row=0, causal=0.8),
         "cost model": None}


def step(spec, device) -> tuple[PagedAttention, tuple, AttentionMetadata]:
    total = sum(n + c for n, c in spec)
    attn = PagedAttention(HEADS, KV_HEADS, HEAD_DIM, HEAD_DIM ** -0.5)
    attn.allocate_cache(total // BLOCK + len(spec) + 1, BLOCK, torch.float32, device)
    slots, tables, qsl, lens, next_block = [], [], [0], [], 1
    for new, cached in spec:
        table = list(range(next_block, next_block + -(-(new + cached) // BLOCK)))
        next_block += len(table)
        slots += [table[t // BLOCK] * BLOCK + t % BLOCK for t in range(cached, cached + new)]
        tables.append(table)
        qsl.append(qsl[-1] + new)
        lens.append(new + cached)
    width = max(map(len, tables))
    padded = torch.tensor([t + [0] * (width - len(t)) for t in tables], device=device)
    meta = AttentionMetadata(torch.tensor(slots, device=device), qsl, lens, padded, BLOCK)
    qkv = tuple(torch.randn(qsl[-1], h, HEAD_DIM, device=device)
                for h in (HEADS, KV_HEADS, KV_HEADS))
    return attn, qkv, meta


def time_modes(spec, device: str, repeats: int) -> dict[str, list[float]]:
    attn, qkv, meta = step(spec, device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    # One CPU thread: count the process's CPU time, which other work on a shared machine
    # barely changes (wall time there mostly measures the neighbours).
    clock = time.process_time if device == "cpu" and torch.get_num_threads() == 1 \
        else time.perf_counter
    default = varlen_prefill.COSTS[device]
    times = {mode: [] for mode in MODES}
    for i in range(repeats + 1):
        for mode, costs in MODES.items():
            varlen_prefill.COSTS[device] = costs or default
            for cached in ("_plan", "_prefill_batches"):  # a fresh plan per step, as in the engine
                meta.__dict__.pop(cached, None)
            sync()
            start = clock()
            attn(*qkv, meta)
            sync()
            if i:  # the first round warms up
                times[mode].append((clock() - start) * 1e3)
    varlen_prefill.COSTS[device] = default
    return times


def end_to_end(profile: str, num_requests: int, device: str, repeats: int) -> None:
    from bench.workload import profile_workload
    from engine import LLM, SamplingParams
    from engine.demo_model import fetch_demo

    llm = LLM(str(fetch_demo()), dtype="float32", device=device, enable_prefix_caching=False)
    _, reqs = profile_workload(profile, llm.engine.model_config.vocab_size, num_requests, 0)
    prompts = [list(r.prompt_token_ids) for r in reqs]
    params = [SamplingParams(temperature=0, max_tokens=r.output_len, ignore_eos=True)
              for r in reqs]
    clock = time.process_time if torch.get_num_threads() == 1 else time.perf_counter
    default, first = varlen_prefill.COSTS[device], None
    try:
        for i in range(repeats):
            for mode, costs in MODES.items():
                varlen_prefill.COSTS[device] = costs or default
                start = clock()
                outs = llm.generate(prompts, params, use_tqdm=False)
                tokens = [o.outputs[0].token_ids for o in outs]
                first = first or tokens
                print(f"round {i + 1} {mode}: {clock() - start:.1f} s, same tokens: "
                      f"{tokens == first}", flush=True)
    finally:
        varlen_prefill.COSTS[device] = default
        llm.shutdown()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.varlen_prefill")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", help="end to end on this bench profile (bench/workload.py)")
    parser.add_argument("--num-requests", type=int, default=6)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.profile:
        return end_to_end(args.profile, args.num_requests, args.device, args.repeats)
    print(f"torch {torch.__version__}, {args.device}, {torch.get_num_threads()} threads; "
          "ms per layer call, median (min)")
    print(f"| step | {' | '.join(MODES)} | batches (cost model) |")
    print(f"|---|{'---|' * (len(MODES) + 1)}")
    for name, spec in STEPS.items():
        times = time_modes(spec, args.device, args.repeats)
        cells = [f"{statistics.median(t):.1f} ({min(t):.1f})" for t in times.values()]
        attn, qkv, meta = step(spec, args.device)
        attn(*qkv, meta)
        batches = [b.num_seqs for b in meta._prefill_batches]
        print(f"| {name} | {' | '.join(cells)} | {batches} |", flush=True)


if __name__ == "__main__":
    main()
