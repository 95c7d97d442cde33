"""Decode attention for CUDA in Triton, reading the paged KV cache in place.

The CUDA counterpart of paged_decode.cpp: one program per (sequence, KV head, split) walks the
sequence's block table and runs an online softmax over its blocks, so there is no gathered copy
of the context and no padding to the longest sequence of the step. The query heads that share a
KV head are processed together (GQA reads each K/V block once). Accumulation is in fp32 whatever
the cache dtype, as in the SDPA path it replaces.

Split-KV (flash-decoding): a small batch has too few (sequence, KV head) pairs to fill a GPU's
SMs (batch 1 of a model with 8 KV heads runs 8 programs on 132 SMs), so each sequence's blocks
are cut into `splits` ranges whose partial softmax states (max, sum, unnormalised output) a
second kernel combines. A large batch runs one split: the partials would cost a write and a read
for no extra parallelism.

A sliding window (window > 0) starts each sequence at its window's first key, length - window
(HF's rule, engine/layers/sliding_window.py): the splits cut the blocks from that key's block on,
and the blocks before it are never read.

Cache layout (engine/layers/attention.py): [kv_heads, num_blocks, block_size, head_dim].
Triton's interpreter (TRITON_INTERPRET=1) runs the same kernels on CPU tensors, which is how the
suite checks them on machines without a GPU; ONENODE_CUDA_KERNELS=0 turns them off.
"""

import functools
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # the engine runs without Triton; CUDA then uses the SDPA path
    triton = None

MAX_SPLITS = 32
MIN_BLOCKS_PER_SPLIT = 2  # a split of one block spends more on its partials than it saves
PROGRAMS_PER_SM = 2


def enabled() -> bool:
    """Whether CUDA decode rows may use this kernel."""
    return triton is not None and os.environ.get("ONENODE_CUDA_KERNELS", "1") != "0"


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


@functools.cache
def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 0  # the interpreter: one split unless a test asks for more
    return torch.cuda.get_device_properties(device).multi_processor_count


def choose_splits(programs: int, max_blocks: int, sms: int) -> int:
    """Splits per sequence so that about PROGRAMS_PER_SM programs run per SM, each over at
    least MIN_BLOCKS_PER_SPLIT blocks of the longest context (the table's width: no sync)."""
    want = -(-PROGRAMS_PER_SM * sms // max(programs, 1))
    return max(1, min(want, MAX_SPLITS, max_blocks // MIN_BLOCKS_PER_SPLIT))


def paged_decode(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                 tables: torch.Tensor, lens: torch.Tensor, scale: float,
                 num_splits: int | None = None, window: int = 0) -> torch.Tensor:
    """q: [n, heads, d]; caches: [kvh, blocks, block_size, d]; tables: [n, max_blocks];
    lens: [n] context lengths (>= 1) -> [n, heads * d] in q's dtype. `num_splits`: split-KV
    ranges per sequence (None: chosen from the batch and the device's SMs). `window`: each
    sequence sees its last `window` keys (0: all of them)."""
    n, heads, d = q.shape
    kvh, _, block_size, _ = k_cache.shape
    q, tables, lens = q.contiguous(), tables.contiguous(), lens.contiguous()
    out = torch.empty(n, heads * d, dtype=q.dtype, device=q.device)
    if n == 0:
        return out
    max_blocks = tables.shape[1]
    if window > 0:  # the most blocks a window of keys can touch (it may start mid-block)
        max_blocks = min(max_blocks, -(-(window - 1) // block_size) + 1)
    if num_splits is None:
        num_splits = choose_splits(n * kvh, max_blocks, _sm_count(q.device))
    per_split = -(-max_blocks // max(1, min(num_splits, max_blocks)))
    splits = -(-max_blocks // per_split)  # no split past the table's last block
    part = stats = out
    if splits > 1:
        part = torch.empty(n * heads * splits * d, dtype=torch.float32, device=q.device)
        stats = torch.empty(n * heads * splits * 2, dtype=torch.float32, device=q.device)
    consts = dict(GROUP=heads // kvh, HEAD_DIM=d, DIM_PAD=_next_pow2(d))
    _decode_kernel[(n, kvh, splits)](
        q, k_cache, v_cache, tables, lens, out, part, stats, scale, per_split, window,
        tables.stride(0), k_cache.stride(0), k_cache.stride(1), BLOCK_SIZE=block_size,
        GROUP_PAD=_next_pow2(heads // kvh), BLOCK_PAD=_next_pow2(block_size),
        SPLIT=splits > 1, **consts)
    if splits > 1:
        _combine_kernel[(n, heads)](part, stats, out, splits, HEAD_DIM=d, DIM_PAD=_next_pow2(d),
                                    SPLIT_PAD=_next_pow2(splits))
    return out


if triton is not None:
    @triton.jit
    def _attend(q, k_ptr, v_ptr, tables_ptr, base_head, first, last, lo, length, scale,
                block_stride, g, d, t, d_ok, GROUP_PAD: tl.constexpr, DIM_PAD: tl.constexpr,
                HEAD_DIM: tl.constexpr, BLOCK_SIZE: tl.constexpr):
        """Online softmax of this program's query rows over blocks [first, last) of the
        sequence's table, keys [lo, length) of them: (running max, running sum, unnormalised
        output), all fp32. Every block in the range holds at least one such key."""
        m = tl.full([GROUP_PAD], float("-inf"), tl.float32)
        denom = tl.zeros([GROUP_PAD], tl.float32)
        acc = tl.zeros([GROUP_PAD, DIM_PAD], tl.float32)
        for b in range(first, last):
            block = tl.load(tables_ptr + b).to(tl.int64)
            t_ok = (t < BLOCK_SIZE) & (b * BLOCK_SIZE + t < length) & (b * BLOCK_SIZE + t >= lo)
            offs = base_head + block * block_stride + t[:, None] * HEAD_DIM + d[None, :]
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
        return m, denom, acc

    @triton.jit
    def _decode_kernel(q_ptr, k_ptr, v_ptr, tables_ptr, lens_ptr, out_ptr, part_ptr, stats_ptr,
                       scale, per_split, window, table_stride, head_stride, block_stride,
                       GROUP: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_SIZE: tl.constexpr,
                       GROUP_PAD: tl.constexpr, DIM_PAD: tl.constexpr, BLOCK_PAD: tl.constexpr,
                       SPLIT: tl.constexpr):
        seq = tl.program_id(0)
        # 64-bit: kv_head x head_stride passes 2**31 elements for caches of a few GiB.
        kv_head = tl.program_id(1).to(tl.int64)
        split = tl.program_id(2)
        g = tl.arange(0, GROUP_PAD)
        d = tl.arange(0, DIM_PAD)
        d_ok = d < HEAD_DIM
        # This KV head's query rows: heads kv_head*GROUP .. +GROUP of this sequence.
        head_row = seq * GROUP * tl.num_programs(1) + kv_head * GROUP + g
        qmask = (g < GROUP)[:, None] & d_ok[None, :]
        q = tl.load(q_ptr + head_row[:, None] * HEAD_DIM + d[None, :], mask=qmask,
                    other=0.0).to(tl.float32)
        length = tl.load(lens_ptr + seq)
        lo = tl.where(window > 0, tl.maximum(length - window, 0), 0)  # the first key seen
        first = lo // BLOCK_SIZE + split * per_split
        last = tl.minimum(tl.cdiv(length, BLOCK_SIZE), first + per_split)
        m, denom, acc = _attend(q, k_ptr, v_ptr, tables_ptr + seq * table_stride,
                                kv_head * head_stride, first, last, lo, length, scale,
                                block_stride,
                                g, d, tl.arange(0, BLOCK_PAD), d_ok, GROUP_PAD, DIM_PAD,
                                HEAD_DIM, BLOCK_SIZE)
        if SPLIT:  # partials at [seq, head, split]; a split past the context keeps -inf, 0, 0
            part_row = head_row * tl.num_programs(2) + split
            tl.store(part_ptr + part_row[:, None] * HEAD_DIM + d[None, :], acc, mask=qmask)
            tl.store(stats_ptr + part_row * 2, m, mask=g < GROUP)
            tl.store(stats_ptr + part_row * 2 + 1, denom, mask=g < GROUP)
        else:
            out = acc / denom[:, None]
            tl.store(out_ptr + head_row[:, None] * HEAD_DIM + d[None, :],
                     out.to(out_ptr.dtype.element_ty), mask=qmask)

    @triton.jit
    def _combine_kernel(part_ptr, stats_ptr, out_ptr, splits, HEAD_DIM: tl.constexpr,
                        DIM_PAD: tl.constexpr, SPLIT_PAD: tl.constexpr):
        """One (sequence, head): rescale each split's state to the global max and normalise.
        Split 0 always holds the first block the query sees, so the global max is finite."""
        head_row = tl.program_id(0) * tl.num_programs(1) + tl.program_id(1)
        s = tl.arange(0, SPLIT_PAD)
        d = tl.arange(0, DIM_PAD)
        s_ok = s < splits
        rows = head_row * splits + s
        m = tl.load(stats_ptr + rows * 2, mask=s_ok, other=float("-inf"))
        denom = tl.load(stats_ptr + rows * 2 + 1, mask=s_ok, other=0.0)
        acc = tl.load(part_ptr + rows[:, None] * HEAD_DIM + d[None, :],
                      mask=s_ok[:, None] & (d < HEAD_DIM)[None, :], other=0.0)
        weight = tl.exp(m - tl.max(m, axis=0))  # empty splits: exp(-inf) = 0
        out = tl.sum(acc * weight[:, None], axis=0) / tl.sum(denom * weight, axis=0)
        tl.store(out_ptr + head_row * HEAD_DIM + d, out.to(out_ptr.dtype.element_ty),
                 mask=d < HEAD_DIM)
