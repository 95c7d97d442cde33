"""Attention with soft-capped logits (Gemma 2): each score becomes cap * tanh(score / cap) before
the mask and the softmax, as HF's eager attention computes it. Gemma 2 caps every layer, sliding
or global.

SDPA and the in-place decode kernels take no such hook, so a PagedAttention built with
`logits_soft_cap` sends its rows here: per sequence, its keys (from the cache; the step's own
keys when there is none yet), the scores as one explicit product, capped, masked causally and to
the layer's sliding window by engine/layers/sliding_window.py's rule, softmax in float32. Under a
window only the blocks that hold visible keys are read.
"""

import torch

from engine.layers.sliding_window import first_key, visible

# Query rows scored at once: bounds the [heads, rows, keys] score tensor of a long prefill.
QUERY_CHUNK = 512


def soft_capped(attn, q, k, v, meta, cached: bool) -> torch.Tensor:
    """q: [T, h, d]; k, v: [T, kvh, d] (already in the cache when `cached`) -> [T, h*d]."""
    out = q.new_empty(q.shape[0], attn.num_heads * attn.head_dim)
    qsl, window = meta.query_start_loc, attn.sliding_window
    for s in range(meta.num_seqs):
        a, b = qsl[s], qsl[s + 1]
        length = meta.seq_lens[s] if cached else b - a
        if cached:  # from the first key the oldest query sees
            first = first_key(length - (b - a) + 1, window)
            keys, vals, first = _cached_keys(attn, meta, s, first, length)
        else:
            keys, vals, first = k[a:b].transpose(0, 1), v[a:b].transpose(0, 1), 0
        out[a:b] = attend(q[a:b], keys, vals, length - (b - a), first, attn.scale,
                          attn.logits_soft_cap, window)
    return out


def _cached_keys(attn, meta, s: int, first: int, length: int):
    """Sequence s's keys and values [kvh, L, d] from whole blocks: positions first..length-1,
    `first` rounded down to its block's start (the mask drops what lies outside the window)."""
    bs = meta.block_size
    lo, hi = first // bs, -(-length // bs)
    blocks = meta.block_tables[s, lo:hi]
    kvh, d = attn.num_kv_heads, attn.head_dim
    keys = attn.k_cache.index_select(1, blocks).view(kvh, -1, d)[:, :length - lo * bs]
    vals = attn.v_cache.index_select(1, blocks).view(kvh, -1, d)[:, :length - lo * bs]
    return keys, vals, lo * bs


def attend(q, keys, vals, q_first: int, k_first: int, scale: float, cap: float,
           window: int | None) -> torch.Tensor:
    """q: [n, h, d] at positions q_first.. ; keys, vals: [kvh, L, d] at positions k_first..
    -> [n, h*d]. Query head i reads KV head i // (h / kvh), as HF's repeat_kv pairs them."""
    n, h, d = q.shape
    kvh, length = keys.shape[:2]
    group = h // kvh
    k_pos = torch.arange(k_first, k_first + length, device=q.device)
    outs = []
    for c in range(0, n, QUERY_CHUNK):
        rows = q[c:c + QUERY_CHUNK]
        m = rows.shape[0]
        qh = rows.transpose(0, 1).reshape(kvh, group * m, d)
        scores = torch.bmm(qh, keys.transpose(1, 2)) * scale  # [kvh, group * m, L]
        scores = torch.tanh(scores / cap) * cap
        q_pos = torch.arange(q_first + c, q_first + c + m, device=q.device)
        seen = visible(q_pos, k_pos, window)  # [m, L]
        scores = scores.view(kvh, group, m, length).masked_fill(~seen, float("-inf"))
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.bmm(probs.view(kvh, group * m, length), vals)  # [kvh, group * m, d]
        outs.append(out.view(h, m, d).transpose(0, 1).reshape(m, h * d))
    return torch.cat(outs) if len(outs) > 1 else outs[0]
