"""Temperature, top-k, top-p and min-p over a whole batch of rows at once, one value per row.

Top-p never sorts the full vocabulary: the nucleus is looked for among a row's most likely
`TOP_P_CANDIDATES` tokens first (`topk`, sorted), and only rows whose nucleus is wider try again
with 8x more candidates, up to the whole vocabulary. Typical nuclei are a few dozen tokens, so
a step costs one softmax and one small `topk` per row instead of a `sort` of ~50k-150k values.
Rules are HF transformers' (and vLLM's): temperature, then top-k (ties with the k-th value are
kept), then top-p (the smallest head whose mass reaches p, at least one token), then min-p.
"""

import torch

NEG_INF = float("-inf")
TOP_P_CANDIDATES = 256


def filter_logits(logits: torch.Tensor, temperature: torch.Tensor, top_k: torch.Tensor,
                  top_p: torch.Tensor, min_p: torch.Tensor) -> torch.Tensor:
    """`logits` [N, V] float; per-row settings [N] on the same device. Returns temperature-scaled
    logits with every excluded token at -inf (a new tensor; the input is untouched)."""
    logits = logits / temperature.clamp(min=1e-5).unsqueeze(1)
    logits = _top_k(logits, top_k)
    logits = _top_p(logits, top_p)
    if bool((min_p > 0).any()):
        probs = torch.softmax(logits, dim=-1)
        cut = min_p.unsqueeze(1) * probs.amax(dim=-1, keepdim=True)
        logits = logits.masked_fill(probs < cut, NEG_INF)
    return logits


def _top_k(logits: torch.Tensor, top_k: torch.Tensor) -> torch.Tensor:
    vocab = logits.shape[-1]
    active = (top_k > 0) & (top_k < vocab)
    if not bool(active.any()):
        return logits
    k = torch.where(active, top_k, torch.ones_like(top_k))
    # One topk at the largest k serves every row: row i reads its own k-th value.
    values = torch.topk(logits, int(k.max()), dim=-1).values
    kth = values.gather(1, (k - 1).unsqueeze(1)).masked_fill(~active.unsqueeze(1), NEG_INF)
    return logits.masked_fill(logits < kth, NEG_INF)


def _top_p(logits: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    rows = torch.nonzero(top_p < 1.0).flatten()
    if rows.numel() == 0:
        return logits
    vocab = logits.shape[-1]
    out = logits.clone()
    probs = torch.softmax(logits[rows], dim=-1)
    width = TOP_P_CANDIDATES
    while rows.numel():
        width = min(width, vocab)
        done, kept = _nucleus(logits[rows], probs, top_p[rows], width)
        out[rows[done]] = kept[done]
        rows, probs, width = rows[~done], probs[~done], width * 8
    return out


def _nucleus(logits: torch.Tensor, probs: torch.Tensor, top_p: torch.Tensor, width: int):
    """(rows whose nucleus lies within their `width` likeliest tokens, those rows' filtered
    logits). A token is dropped when the mass of the tokens ranked above it already reaches p."""
    cand_probs, idx = torch.topk(probs, width, dim=-1)
    above = cand_probs.cumsum(dim=-1) - cand_probs
    drop = above >= top_p.unsqueeze(1)
    drop[:, 0] = False  # a top_p below float precision still keeps the most likely token
    done = drop[:, -1] | (width == logits.shape[-1])
    kept = torch.full_like(logits, NEG_INF)
    kept.scatter_(1, idx, logits.gather(1, idx).masked_fill(drop, NEG_INF))
    return done, kept
