"""Sampler: next tokens from last-position logits, one SamplingParams per row.

Logits processors (grammar mask, token bans, bias, penalties) run first; then greedy rows take a
batched argmax and all random rows are filtered (temperature, top-k, top-p, min-p) and drawn
together. Logits stay on their device; only token ids (and requested logprobs) come back.

A seeded row draws `argmax(probs / E)` with E ~ Exp(1) per token from a CPU generator seeded by
(seed, output position) alone (`draw_seed`): exactly what `torch.multinomial(probs, 1)` computes,
so its tokens depend neither on the batch around it, nor on the device, nor on where the earlier
tokens were computed: a request resumed on another replica (engine/loop/migration.py) continues
exactly as it would have. Unseeded rows draw by inverse CDF from the global generator (one
uniform per row instead of one exponential per token).
"""

import torch

from engine.core.scheduler_output import SampledToken, ScheduledSeq
from engine.layers.logits_processors import process_logits
from engine.layers.sampling_filters import filter_logits


def sample(logits: torch.Tensor, seqs: list[ScheduledSeq]) -> list[SampledToken]:
    raw = logits.float()
    # Logprobs describe the model's distribution (vLLM's default), before penalties and filters.
    logits = process_logits(raw, seqs)
    greedy = torch.tensor([s.params.greedy for s in seqs], device=raw.device)
    tokens = logits.argmax(dim=-1) if bool(greedy.any()) else \
        torch.zeros(len(seqs), dtype=torch.long, device=raw.device)
    if not bool(greedy.all()):
        rows = torch.nonzero(~greedy).flatten()
        drawn = _draw(logits[rows], [seqs[i] for i in rows.tolist()])
        tokens = tokens.index_put((rows,), drawn)
    return _results(tokens, raw, seqs)


def _draw(logits: torch.Tensor, seqs: list[ScheduledSeq]) -> torch.Tensor:
    """One token per row, all rows random."""
    def column(name, dtype):
        return torch.tensor([getattr(s.params, name) for s in seqs], dtype=dtype,
                            device=logits.device)

    filtered = filter_logits(logits, column("temperature", torch.float32),
                             column("top_k", torch.long), column("top_p", torch.float32),
                             column("min_p", torch.float32))
    probs = torch.softmax(filtered, dim=-1)
    seeded = torch.tensor([s.params.seed is not None for s in seqs], device=logits.device)
    tokens = torch.empty(len(seqs), dtype=torch.long, device=logits.device)
    if bool(seeded.any()):
        rows = torch.nonzero(seeded).flatten()
        noise = _seeded_noise([seqs[i] for i in rows.tolist()], probs.shape[-1], probs.device)
        tokens[rows] = (probs[rows] / noise).argmax(dim=-1)
    if not bool(seeded.all()):
        rows = torch.nonzero(~seeded).flatten()
        tokens[rows] = _inverse_cdf(probs[rows])
    return tokens


def draw_seed(seed: int, position: int) -> int:
    """The generator seed of output position `position`: a function of (seed, position) only
    (a tuple of ints hashes the same in every process, unlike str)."""
    return hash((seed, position)) & (2**63 - 1)


def _seeded_noise(seqs: list[ScheduledSeq], vocab: int, device) -> torch.Tensor:
    """The Exp(1) draws torch.multinomial would make with the row's own CPU generator."""
    rows = []
    for s in seqs:
        gen = torch.Generator().manual_seed(draw_seed(s.params.seed, len(s.output_token_ids)))
        rows.append(torch.empty(vocab).exponential_(generator=gen))
    return torch.stack(rows).to(device)


def _inverse_cdf(probs: torch.Tensor) -> torch.Tensor:
    """Unseeded rows need only the distribution, not multinomial's exact stream: one uniform
    per row against the running sum costs far less than one exponential per token."""
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(len(probs), 1, device=probs.device) * cdf[:, -1:]
    # The first token whose running sum exceeds u has non-zero probability.
    return torch.searchsorted(cdf, u, right=True).flatten().clamp(max=probs.shape[-1] - 1)


def _results(tokens: torch.Tensor, raw: torch.Tensor,
             seqs: list[ScheduledSeq]) -> list[SampledToken]:
    ids = tokens.tolist()
    want = [i for i, s in enumerate(seqs) if s.params.logprobs is not None]
    if not want:
        return [SampledToken(t) for t in ids]
    rows = torch.tensor(want, device=raw.device)
    logprobs = torch.log_softmax(raw[rows], dim=-1)
    chosen = logprobs.gather(1, tokens[rows].unsqueeze(1)).flatten().tolist()
    k = max(seqs[i].params.logprobs for i in want)
    top_vals, top_idx = (t.tolist() for t in torch.topk(logprobs, k, dim=-1)) if k else ([], [])
    out = [SampledToken(t) for t in ids]
    for j, i in enumerate(want):
        n = seqs[i].params.logprobs
        top = dict(zip(top_idx[j][:n], top_vals[j][:n])) if n else {}
        out[i] = SampledToken(ids[i], chosen[j], top)
    return out
