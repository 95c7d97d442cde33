"""Paged attention in PyTorch (CPU and CUDA): new K/V are written into the block cache at
`slot_mapping`, then each sequence attends to its cached context gathered by block table.

Decode-only steps run as one batched scaled_dot_product_attention over contexts padded to the
longest; steps with prefills run per sequence (causal with an offset when a prefix was cached).
The gather indices are built once per step and shared by all layers (cached on the metadata).
"""

import torch
from torch import nn
from torch.nn.functional import scaled_dot_product_attention as sdpa

from engine.layers.attention_metadata import AttentionMetadata


class PagedAttention(nn.Module):
    def __init__(self, num_heads: int, num_kv_heads: int, head_dim: int, scale: float):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.scale = scale
        self.k_cache: torch.Tensor | None = None
        self.v_cache: torch.Tensor | None = None

    def forward(self, q, k, v, meta: AttentionMetadata) -> torch.Tensor:
        """q: [T, h, d]; k, v: [T, kvh, d] -> [T, h*d]."""
        if meta.no_cache or self.k_cache is None:
            return self._no_cache(q, k, v, meta)
        kf = self.k_cache.view(-1, self.num_kv_heads, self.head_dim)
        vf = self.v_cache.view(-1, self.num_kv_heads, self.head_dim)
        kf.index_copy_(0, meta.slot_mapping, k)
        vf.index_copy_(0, meta.slot_mapping, v)
        if meta.is_decode_only:
            return self._decode(q, kf, vf, meta)
        return self._prefill(q, kf, vf, meta)

    def _decode(self, q, kf, vf, meta) -> torch.Tensor:
        idx, mask = _decode_index(meta)  # [S, L], [S, 1, 1, L]
        keys = kf[idx].transpose(1, 2)  # [S, kvh, L, d]
        vals = vf[idx].transpose(1, 2)
        out = sdpa(q.unsqueeze(2), keys, vals, attn_mask=mask, scale=self.scale,
                   enable_gqa=self.num_heads != self.num_kv_heads)  # [S, h, 1, d]
        return out.reshape(q.shape[0], -1)

    def _prefill(self, q, kf, vf, meta) -> torch.Tensor:
        outs = []
        for s, (slots, qs, qe) in enumerate(_prefill_index(meta)):
            keys = kf[slots].transpose(0, 1)  # [kvh, L, d]
            vals = vf[slots].transpose(0, 1)
            outs.append(self._causal(q[qs:qe].transpose(0, 1), keys, vals))
        return torch.cat(outs, dim=0)

    def _no_cache(self, q, k, v, meta) -> torch.Tensor:
        outs = []
        qsl = meta.query_start_loc
        for s in range(meta.num_seqs):
            a, b = qsl[s], qsl[s + 1]
            outs.append(self._causal(q[a:b].transpose(0, 1), k[a:b].transpose(0, 1),
                                     v[a:b].transpose(0, 1)))
        return torch.cat(outs, dim=0)

    def _causal(self, q, keys, vals) -> torch.Tensor:
        """q: [h, n, d] are the last n positions of a context of L keys: [kvh, L, d]."""
        n, length = q.shape[1], keys.shape[1]
        gqa = self.num_heads != self.num_kv_heads
        if n == length:
            out = sdpa(q, keys, vals, is_causal=True, scale=self.scale, enable_gqa=gqa)
        else:
            pos = torch.arange(length - n, length, device=q.device).unsqueeze(1)
            mask = torch.arange(length, device=q.device).unsqueeze(0) <= pos  # [n, L]
            out = sdpa(q, keys, vals, attn_mask=mask, scale=self.scale, enable_gqa=gqa)
        return out.transpose(0, 1).reshape(n, -1)


def _slots(meta: AttentionMetadata, s: int, length: int) -> torch.Tensor:
    pos = torch.arange(length, device=meta.block_tables.device)
    bs = meta.block_size
    return meta.block_tables[s, pos // bs] * bs + pos % bs


def _decode_index(meta: AttentionMetadata):
    cached = getattr(meta, "_decode_idx", None)
    if cached is not None:
        return cached
    device = meta.block_tables.device
    lens = torch.tensor(meta.seq_lens, device=device)
    width = int(max(meta.seq_lens))
    pos = torch.arange(width, device=device).unsqueeze(0)
    valid = pos < lens.unsqueeze(1)  # [S, L]
    # Padding points at each sequence's own first slot: finite data, masked out below.
    pos = torch.where(valid, pos, torch.zeros_like(pos))
    bs = meta.block_size
    idx = torch.gather(meta.block_tables, 1, pos // bs) * bs + pos % bs
    meta._decode_idx = (idx, valid[:, None, None, :])
    return meta._decode_idx


def _prefill_index(meta: AttentionMetadata):
    cached = getattr(meta, "_prefill_idx", None)
    if cached is None:
        qsl = meta.query_start_loc
        cached = [(_slots(meta, s, meta.seq_lens[s]), qsl[s], qsl[s + 1])
                  for s in range(meta.num_seqs)]
        meta._prefill_idx = cached
    return cached
