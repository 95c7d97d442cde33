"""Sampler: next tokens from last-position logits, one SamplingParams per row.

Logits processors (grammar mask, token bans, bias, penalties) run first; then greedy rows take a
batched argmax and random rows apply temperature, top-k, top-p and min-p. A seeded row draws
from a generator seeded by (seed, output position) alone, so its tokens depend neither on which
other requests share the batch nor on where the earlier tokens were computed: a request resumed
on another replica (engine/loop/migration.py) continues exactly as it would have.
"""

import torch

from engine.core.scheduler_output import SampledToken, ScheduledSeq
from engine.layers.logits_processors import process_logits


def sample(logits: torch.Tensor, seqs: list[ScheduledSeq]) -> list[SampledToken]:
    raw = logits.float().cpu()
    # Logprobs describe the model's distribution (vLLM's default), before penalties and filters.
    logits = process_logits(raw, seqs)
    greedy = [s.params.greedy for s in seqs]
    tokens = torch.empty(len(seqs), dtype=torch.long)
    if any(greedy):
        rows = torch.tensor([i for i, g in enumerate(greedy) if g])
        tokens[rows] = logits[rows].argmax(dim=-1)
    for i, s in enumerate(seqs):
        if not greedy[i]:
            tokens[i] = _sample_row(logits[i], s)
    want_logprobs = any(s.params.logprobs is not None for s in seqs)
    logprobs = torch.log_softmax(raw, dim=-1) if want_logprobs else None
    return [_result(tokens[i].item(), logprobs[i] if logprobs is not None else None, s)
            for i, s in enumerate(seqs)]


def filter_logits(row: torch.Tensor, temperature: float, top_k: int, top_p: float,
                  min_p: float) -> torch.Tensor:
    """Temperature-scaled logits with every excluded token at -inf."""
    row = row / max(temperature, 1e-5)
    if top_k > 0 and top_k < row.numel():
        kth = torch.topk(row, top_k).values[-1]
        row = row.masked_fill(row < kth, float("-inf"))
    if top_p < 1.0:
        # Keep the smallest head of the sorted distribution whose mass reaches top_p.
        sorted_vals, order = torch.sort(row, descending=True)
        probs = torch.softmax(sorted_vals, dim=-1)
        drop = probs.cumsum(-1) - probs >= top_p
        drop[0] = False  # a top_p below float precision still keeps the most likely token
        row = row.clone()
        row[order[drop]] = float("-inf")
    if min_p > 0:
        probs = torch.softmax(row, dim=-1)
        row = row.masked_fill(probs < min_p * probs.max(), float("-inf"))
    return row


def _sample_row(row: torch.Tensor, s: ScheduledSeq) -> int:
    p = s.params
    probs = torch.softmax(filter_logits(row, p.temperature, p.top_k, p.top_p, p.min_p), dim=-1)
    gen = None
    if p.seed is not None:
        gen = torch.Generator().manual_seed(draw_seed(p.seed, len(s.output_token_ids)))
    return int(torch.multinomial(probs, 1, generator=gen).item())


def draw_seed(seed: int, position: int) -> int:
    """The generator seed of output position `position`: a function of (seed, position) only
    (a tuple of ints hashes the same in every process, unlike str)."""
    return hash((seed, position)) & (2**63 - 1)


def _result(token: int, logprobs_row, s: ScheduledSeq) -> SampledToken:
    if logprobs_row is None or s.params.logprobs is None:
        return SampledToken(token)
    top = {}
    if s.params.logprobs > 0:
        vals, idx = torch.topk(logprobs_row, s.params.logprobs)
        top = {int(i): float(v) for i, v in zip(idx, vals)}
    return SampledToken(token, float(logprobs_row[token]), top)
