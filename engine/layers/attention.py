"""Paged attention in PyTorch (CPU and CUDA) over a head-major block cache.

Each layer's cache is [kv_heads, num_blocks, block_size, head_dim]. Gathering a sequence's blocks
along dim 1 copies whole blocks (index_select, not token by token) and yields, per KV head, its
keys as one contiguous [L, head_dim] matrix: the layout SDPA's CPU and CUDA kernels read fastest.

- Decode rows go to a kernel that walks each sequence's block table and reads K/V in place: no
  copy, no padding. On CPU the C++ one (engine/kernels/paged_decode.cpp), on CUDA the Triton one
  (engine/kernels/triton_decode.py); engine/layers/decode_kernel.py picks it, and turns it off
  for the process if it fails (a Triton compile error at warm-up). Without it (no compiler or
  no Triton, ONENODE_CPU_KERNELS=0 or ONENODE_CUDA_KERNELS=0, or after such a failure), decode
  rows run per length bucket (engine/layers/attention_plan.py, built once per step): one SDPA
  call per bucket, padded only to the bucket's longest context.
  The query heads sharing a KV head become that head's query rows, so GQA needs no copy of K/V
  per query head.
- Prefill rows attend causally to their context, the step's prefill sequences padded into as
  few SDPA calls as pay (engine/layers/varlen_prefill.py): one per step where a call costs more
  than padding (CUDA), mostly one unpadded call per sequence where packing rows costs more than
  a call (CPU). Keys of sequences without a cached prefix come from the new K/V directly. On
  CPU a lone sequence runs in the C++ prefill kernel where it applies
  (engine/layers/prefill_kernel.py): its GQA heads share each key, 3-4x SDPA's flash.
- A layer with a sliding window (Mistral, some Qwen2 layers) hides keys `window` or more
  positions behind each query, on every path, by the one rule of engine/layers/sliding_window.py.
  Its cache still holds the whole context: blocks behind every window are not freed.
- A layer with `logits_soft_cap` (Gemma 2) scores explicitly in engine/layers/softcap_attention.py
  instead (window included): SDPA and the kernels cannot cap the scores before the softmax.
"""

import torch
from torch import nn
from torch.nn.functional import scaled_dot_product_attention as sdpa

from engine.kernels.build import takes as cpu_kernels_take
from engine.layers import cache_memory, decode_kernel, prefill_kernel
from engine.layers.attention_metadata import AttentionMetadata
from engine.layers.attention_plan import attention_plan
from engine.layers.softcap_attention import soft_capped
from engine.layers.varlen_prefill import pack_keys, pack_queries, prefill_batches, unpack


class PagedAttention(nn.Module):
    def __init__(self, num_heads: int, num_kv_heads: int, head_dim: int, scale: float, *,
                 sliding_window: int | None = None, logits_soft_cap: float | None = None):
        """`sliding_window`: each query sees only the keys fewer than this many positions
        behind it (itself included); None: every earlier key. `logits_soft_cap`: scores
        become cap * tanh(score / cap) before the mask and the softmax; None: no cap."""
        super().__init__()
        if sliding_window is not None and sliding_window < 1:
            raise ValueError(f"sliding_window={sliding_window} must be a positive number of "
                             f"positions, or None for full attention")
        self.logits_soft_cap = logits_soft_cap
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.group = num_heads // num_kv_heads
        self.scale = scale
        self.sliding_window = sliding_window
        self.k_cache: torch.Tensor | None = None
        self.v_cache: torch.Tensor | None = None
        self.in_place = False  # decode through a kernel that reads the cache in place

    def allocate_cache(self, num_blocks: int, block_size: int, dtype, device) -> None:
        """Zeroed, and on CPU committed only as it fills (engine/layers/cache_memory.py)."""
        shape = (self.num_kv_heads, num_blocks, block_size, self.head_dim)
        self.k_cache, self.v_cache = (cache_memory.zeros(shape, dtype, device) for _ in range(2))
        self.in_place = decode_kernel.available(torch.device(device).type)

    def forward(self, q, k, v, meta: AttentionMetadata) -> torch.Tensor:
        """q: [T, h, d]; k, v: [T, kvh, d] -> [T, h*d]."""
        if meta.no_cache or self.k_cache is None:
            if self.logits_soft_cap is not None:
                return soft_capped(self, q, k, v, meta, cached=False)
            return self._prefill(q, k, v, meta, attention_plan(meta).prefill)
        self._write_cache(k, v, meta.slot_mapping)
        if self.logits_soft_cap is not None:
            return soft_capped(self, q, k, v, meta, cached=True)
        plan, decoded = self._plan_and_decode_in_place(q, meta)
        if decoded is not None and plan.batch.rows is None:
            return decoded
        if decoded is None and not plan.decode:  # a prefill-only step
            return self._prefill(q, k, v, meta, plan.prefill)
        out = q.new_empty(q.shape[0], self.num_heads * self.head_dim)
        if decoded is not None:
            out.index_copy_(0, plan.batch.rows, decoded)
        for bucket in plan.decode:
            out.index_copy_(0, bucket.rows, self._decode(q.index_select(0, bucket.rows), bucket))
        return self._prefill(q, k, v, meta, plan.prefill, out)

    def _write_cache(self, k, v, slots) -> None:
        """The step's new K/V rows into their cache slots (the C++ copy on CPU: index_copy_
        along the cache's token dim runs on one thread, element by element)."""
        if cpu_kernels_take(k) and k.dtype == self.k_cache.dtype:
            torch.ops.onenode.cache_write(k, v, self.k_cache, self.v_cache, slots)
            return
        kvh, d = self.num_kv_heads, self.head_dim
        self.k_cache.view(kvh, -1, d).index_copy_(1, slots, k.transpose(0, 1))
        self.v_cache.view(kvh, -1, d).index_copy_(1, slots, v.transpose(0, 1))

    def _plan_and_decode_in_place(self, q, meta):
        """The step's plan, and its decode rows through the in-place kernel when the plan has
        them as a batch. A kernel failure re-plans them into SDPA buckets (None decoded)."""
        plan = attention_plan(meta, self.in_place and decode_kernel.usable(q.device.type))
        batch = plan.batch
        if batch is None:
            return plan, None
        rows = q if batch.rows is None else q.index_select(0, batch.rows)
        try:
            return plan, decode_kernel.decode(rows, self.k_cache, self.v_cache, batch.tables,
                                              batch.lens, self.scale, self.sliding_window)
        except decode_kernel.KernelFailed:
            return attention_plan(meta, in_place=False, rebuild=True), None

    def _decode(self, q, bucket) -> torch.Tensor:
        """q: [n, h, d] -> [n, h*d] over the bucket's padded contexts."""
        n, kvh, d = bucket.num_seqs, self.num_kv_heads, self.head_dim
        keys = self._gather(self.k_cache, bucket.blocks).view(kvh, n, bucket.width, d)
        vals = self._gather(self.v_cache, bucket.blocks).view(kvh, n, bucket.width, d)
        mask = bucket.mask(self.sliding_window)
        out = sdpa(q.view(n, kvh, self.group, d), keys.transpose(0, 1), vals.transpose(0, 1),
                   attn_mask=mask, scale=self.scale)  # [n, kvh, group, d]
        return out.reshape(n, -1)

    def _prefill(self, q, k, v, meta, seqs, out=None) -> torch.Tensor:
        """The prefill rows of `out` (made here when None), one attention call per batch of
        sequences (engine/layers/varlen_prefill.py)."""
        batches = prefill_batches(meta, seqs, q.device.type)
        if out is None and len(batches) == 1 and batches[0].covers(q.shape[0]):
            return self._attend(q, k, v, batches[0])  # already in the step's row order
        if out is None:
            out = q.new_empty(q.shape[0], self.num_heads * self.head_dim)
        for batch in batches:
            if batch.token_rows is None:
                out[batch.seqs[0].start:batch.seqs[0].end] = self._attend(q, k, v, batch)
            else:
                out.index_copy_(0, batch.token_rows, self._attend(q, k, v, batch))
        return out

    def _attend(self, q, k, v, batch) -> torch.Tensor:
        """One SDPA call over the batch -> its query rows [N, h*d]. 4-D inputs throughout: with
        3-D ones SDPA's CPU dispatch picks the math kernel (~8x slower on a 512-token prompt)."""
        if batch.q_index is None:  # a lone sequence: its own rows, no padding
            p = batch.seqs[0]
            keys, vals = self._lone_kv(k, v, p)
            if prefill_kernel.takes(q, p.length, self.sliding_window):
                return prefill_kernel.attend(q[p.start:p.end], keys, vals, self.scale)
            queries = q[p.start:p.end].transpose(0, 1)[None]
            out = self._sdpa(queries, keys.transpose(0, 1)[None], vals.transpose(0, 1)[None],
                             batch.mask(self.sliding_window))
            return out[0].transpose(0, 1).reshape(p.end - p.start, -1)
        mask = batch.mask(self.sliding_window)
        queries = pack_queries(q, batch)
        keys, vals = pack_keys(k, self.k_cache, batch), pack_keys(v, self.v_cache, batch)
        return unpack(self._sdpa(queries, keys, vals, mask), batch)

    def _lone_kv(self, k, v, p):
        """One sequence's [L, kvh, d] keys and values: its new rows, or gathered by block."""
        if p.blocks is None:
            return k[p.start:p.end], v[p.start:p.end]
        kvh, d = self.num_kv_heads, self.head_dim
        keys = self._gather(self.k_cache, p.blocks).view(kvh, -1, d)[:, :p.length]
        vals = self._gather(self.v_cache, p.blocks).view(kvh, -1, d)[:, :p.length]
        return keys.transpose(0, 1), vals.transpose(0, 1)

    def _sdpa(self, q, keys, vals, mask) -> torch.Tensor:
        gqa = self.num_heads != self.num_kv_heads
        if mask is None:
            return sdpa(q, keys, vals, is_causal=True, scale=self.scale, enable_gqa=gqa)
        return sdpa(q, keys, vals, attn_mask=mask, scale=self.scale, enable_gqa=gqa)

    @staticmethod
    def _gather(cache: torch.Tensor, blocks: torch.Tensor) -> torch.Tensor:
        kvh, num_blocks = cache.shape[:2]
        return cache.view(kvh, num_blocks, -1).index_select(1, blocks)
