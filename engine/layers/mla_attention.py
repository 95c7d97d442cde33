"""Multi-head latent attention (DeepSeek-V2/V3) over a paged cache of compressed latents.

Per token the cache holds one row of kv_lora_rank + qk_rope_head_dim numbers: the normalized
KV latent c and the rotated rope key k_pe that all heads share. No per-head K or V is stored:
one tensor per layer, [num_blocks, block_size, kv_lora_rank + qk_rope_head_dim], the same on
every TP rank (each rank reads it for its own heads). For DeepSeek-V3 that is 512 + 64 numbers
a token and layer, where 128 heads of K (192) and V (128) would take 40960: 71x less.

Attention runs in the absorbed form (DeepSeek-V2, appendix C). With kv_b_proj's per-head blocks
W_UK_i (keys) and W_UV_i (values), the score of head i for cached token j is
    q_nope_i . (W_UK_i c_j) + q_pe_i . k_pe_j = [W_UK_i^T q_nope_i, q_pe_i] . [c_j, k_pe_j]
so each query is lifted into latent space once and attends to the cache rows as they are:
multi-query attention with one KV head whose key is the whole row and whose value is c. The
latent output of head i is brought down through W_UV_i afterwards. Prefill and decode share this
form; which blocks each query reads comes from the step's plan (attention_plan.py).
"""

import torch
from torch import nn
from torch.nn.functional import scaled_dot_product_attention as sdpa

from engine.layers import cache_memory
from engine.layers.attention_metadata import AttentionMetadata
from engine.layers.attention_plan import attention_plan


class MLAAttention(nn.Module):
    def __init__(self, num_heads: int, qk_nope_head_dim: int, v_head_dim: int,
                 kv_lora_rank: int, qk_rope_head_dim: int, scale: float):
        super().__init__()
        self.num_heads = num_heads  # this rank's heads
        self.nope, self.v_dim = qk_nope_head_dim, v_head_dim
        self.rank, self.rope = kv_lora_rank, qk_rope_head_dim
        self.scale = scale
        self.cache: torch.Tensor | None = None

    @property
    def row_width(self) -> int:
        """Numbers cached per token: the latent and the rope key."""
        return self.rank + self.rope

    def allocate_cache(self, num_blocks: int, block_size: int, dtype, device) -> None:
        """Zeroed for the same reason as PagedAttention's: masked tails must be finite."""
        self.cache = cache_memory.zeros((num_blocks, block_size, self.row_width), dtype, device)

    def forward(self, q_nope, q_pe, latent, k_pe, kv_b_weight, meta: AttentionMetadata):
        """q_nope [T, h, nope], q_pe [T, h, rope] (rotated), latent [T, r] (normalized),
        k_pe [T, rope] (rotated), kv_b_weight: this rank's rows of kv_b_proj,
        [h * (nope + v), r] -> [T, h * v]."""
        w = kv_b_weight.view(self.num_heads, self.nope + self.v_dim, self.rank)
        w_uk, w_uv = w[:, :self.nope], w[:, self.nope:]
        q_latent = torch.bmm(q_nope.transpose(0, 1), w_uk).transpose(0, 1)  # [T, h, r]
        q = torch.cat((q_latent, q_pe), dim=-1)
        rows = torch.cat((latent, k_pe), dim=-1)
        out = self._attend(q, rows, meta)  # [T, h, r]
        out = torch.bmm(out.transpose(0, 1), w_uv.transpose(1, 2))  # [h, T, v]
        return out.transpose(0, 1).reshape(q.shape[0], -1)

    def _attend(self, q, rows, meta: AttentionMetadata) -> torch.Tensor:
        """q [T, h, r + rope] against cache rows -> latent outputs [T, h, r]."""
        if meta.no_cache or self.cache is None:
            return self._no_cache(q, rows, meta)
        self.cache.view(-1, self.row_width).index_copy_(0, meta.slot_mapping, rows)
        plan = attention_plan(meta)
        out = q.new_empty(q.shape[0], self.num_heads, self.rank)
        for bucket in plan.decode:
            out.index_copy_(0, bucket.rows, self._decode(q.index_select(0, bucket.rows), bucket))
        for p in plan.prefill:
            keys = rows[p.start:p.end] if p.blocks is None \
                else self._gather(p.blocks)[:p.length]
            out[p.start:p.end] = self._causal(q[p.start:p.end], keys)
        return out

    def _gather(self, blocks: torch.Tensor) -> torch.Tensor:
        """The rows of whole blocks, in table order: [len(blocks) * block_size, row_width]."""
        return self.cache.index_select(0, blocks).view(-1, self.row_width)

    def _decode(self, q, bucket) -> torch.Tensor:
        """q [n, h, E], one new token per sequence -> [n, h, r] over the bucket's padded
        contexts. A sequence's heads are the query rows of its single KV head."""
        n = bucket.num_seqs
        keys = self._gather(bucket.blocks).view(n, 1, bucket.width, self.row_width)
        out = sdpa(q.unsqueeze(1), keys, keys[..., :self.rank], attn_mask=bucket.mask(),
                   scale=self.scale)  # [n, 1, h, r]
        return out.squeeze(1)

    def _no_cache(self, q, rows, meta) -> torch.Tensor:
        qsl = meta.query_start_loc
        return torch.cat([self._causal(q[qsl[s]:qsl[s + 1]], rows[qsl[s]:qsl[s + 1]])
                          for s in range(meta.num_seqs)], dim=0)

    def _causal(self, q, keys) -> torch.Tensor:
        """q [n, h, E] are the last n positions of a context of L rows [L, E] -> [n, h, r]."""
        n, length = q.shape[0], keys.shape[0]
        q = q.transpose(0, 1)[None]  # [1, h, n, E]
        k = keys[None, None]  # [1, 1, L, E]: one KV head for every query head
        v = k[..., :self.rank]
        if n == length:
            out = sdpa(q, k, v, is_causal=True, scale=self.scale, enable_gqa=True)
        else:
            pos = torch.arange(length - n, length, device=q.device).unsqueeze(1)
            mask = torch.arange(length, device=q.device).unsqueeze(0) <= pos  # [n, L]
            out = sdpa(q, k, v, attn_mask=mask, scale=self.scale, enable_gqa=True)
        return out[0].transpose(0, 1)
