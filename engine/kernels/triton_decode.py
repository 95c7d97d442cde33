"""Decode attention for CUDA in Triton, reading the paged KV cache in place.

The CUDA counterpart of paged_decode.cpp: one program per (sequence, KV head) walks the
sequence's block table and runs an online softmax over its blocks, so there is no gathered copy
of the context and no padding to the longest sequence of the step. The query heads that share a
KV head are processed together (GQA reads each K/V block once). Accumulation is in fp32 whatever
the cache dtype, as in the SDPA path it replaces.

Cache layout (engine/layers/attention.py): [kv_heads, num_blocks, block_size, head_dim].
Triton's interpreter (TRITON_INTERPRET=1) runs the same kernel on CPU tensors, which is how the
suite checks it on machines without a GPU; ONENODE_CUDA_KERNELS=0 turns it off.
"""

import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the engine runs without Triton; CUDA then uses the SDPA path
    triton = None


def enabled() -> bool:
    """Whether CUDA decode rows may use this kernel."""
    return triton is not None and os.environ.get("ONENODE_CUDA_KERNELS", "1") != "0"


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def paged_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                 tables: torch.Tensor, lens: torch.Tensor, scale: float) -> torch.Tensor:
    """q: [n, heads, d]; caches: [kvh, blocks, block_size, d]; tables: [n, max_blocks];
    lens: [n] context lengths (>= 1) -> [n, heads * d] in q's dtype."""
    n, heads, d = q.shape
    kvh, _, block_size, _ = k_cache.shape
    group = heads // kvh
    q, tables, lens = q.contiguous(), tables.contiguous(), lens.contiguous()
    out = torch.empty(n, heads * d, dtype=q.dtype, device=q.device)
    if n == 0:
        return out
    _decode_kernel[(n, kvh)](
        q, k_cache, v_cache, tables, lens, out, scale,
        tables.stride(0), k_cache.stride(0), k_cache.stride(1),
        GROUP=group, HEAD_DIM=d, BLOCK_SIZE=block_size,
        GROUP_PAD=_next_pow2(group), DIM_PAD=_next_pow2(d), BLOCK_PAD=_next_pow2(block_size))
    return out


if triton is not None:
    @triton.jit
    def _decode_kernel(q_ptr, k_ptr, v_ptr, tables_ptr, lens_ptr, out_ptr, scale,
                       table_stride, head_stride, block_stride,
                       GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_SIZE: tl.constexpr,
                       GROUP_PAD: tl.constexpr, DIM_PAD: tl.constexpr, BLOCK_PAD: tl.constexpr):
        seq = tl.program_id(0)
        # 64-bit: kv_head x head_stride passes 2**31 elements for caches of a few GiB.
        kv_head = tl.program_id(1).to(tl.int64)
        g = tl.arange(0, GROUP_PAD)
        d = tl.arange(0, DIM_PAD)
        t = tl.arange(0, BLOCK_PAD)
        g_ok = g < GROUP
        d_ok = d < HEAD_DIM
        # This KV head's query rows: heads kv_head*GROUP .. +GROUP of this sequence.
        row = (seq * GROUP * tl.num_programs(1) + kv_head * GROUP + g) * HEAD_DIM
        qmask = g_ok[:, None] & d_ok[None, :]
        q = tl.load(q_ptr + row[:, None] + d[None, :], mask=qmask, other=0.0).to(tl.float32)
        length = tl.load(lens_ptr + seq)
        m = tl.full([GROUP_PAD], float("-inf"), tl.float32)
        denom = tl.zeros([GROUP_PAD], tl.float32)
        acc = tl.zeros([GROUP_PAD, DIM_PAD], tl.float32)
        for b in range(tl.cdiv(length, BLOCK_SIZE)):
            block = tl.load(tables_ptr + seq * table_stride + b).to(tl.int64)
            t_ok = (t < BLOCK_SIZE) & (b * BLOCK_SIZE + t < length)
            base = kv_head * head_stride + block * block_stride
            offs = base + t[:, None] * HEAD_DIM + d[None, :]
            kvmask = t_ok[:, None] & d_ok[None, :]
            k = tl.load(k_ptr + offs, mask=kvmask, other=0.0).to(tl.float32)
            v = tl.load(v_ptr + offs, mask=kvmask, other=0.0).to(tl.float32)
            scores = tl.sum(q[:, None, :] * k[None, :, :], axis=2) * scale  # [GROUP, BLOCK]
            scores = tl.where(t_ok[None, :], scores, float("-inf"))
            m_new = tl.maximum(m, tl.max(scores, axis=1))
            alpha = tl.exp(m - m_new)
            p = tl.exp(scores - m_new[:, None])
            denom = denom * alpha + tl.sum(p, axis=1)
            acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * v[None, :, :], axis=1)
            m = m_new
        out = acc / denom[:, None]
        tl.store(out_ptr + row[:, None] + d[None, :], out.to(out_ptr.dtype.element_ty),
                 mask=qmask)
