"""Zeroed KV-cache memory that costs RAM only as it fills, in huge pages on CPU.

The cache must start zeroed: decode reads whole blocks, and the unwritten tail of a sequence's
last block is masked, which only cancels finite numbers (0 x NaN is NaN). On CPU the zeros come
from an anonymous mapping: the kernel maps a page only when it is first written, so a generous
kv_cache_space_gib costs memory only as the cache fills. Each first write is a page fault, though:
with 4 KiB pages a run that fills 1 GiB of cache takes ~260k of them (1-2 s on a 2-core VM), so
the mapping asks for transparent huge pages (MADV_HUGEPAGE; honoured where THP is `madvise` or
`always`): 512x fewer faults, memory still committed as the cache fills, 2 MiB at a time.
"""

import math
import mmap

import torch


def zeros(shape: tuple[int, ...], dtype: torch.dtype, device) -> torch.Tensor:
    if torch.device(device).type != "cpu":
        return torch.zeros(shape, dtype=dtype, device=device)
    count = math.prod(shape) * dtype.itemsize
    if count == 0:
        return torch.zeros(shape, dtype=dtype)
    buf = mmap.mmap(-1, count, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            buf.madvise(mmap.MADV_HUGEPAGE)
        except OSError:  # a kernel without THP: 4 KiB pages, the same zeros
            pass
    # torch keeps `buf` alive through the tensor's storage (the buffer protocol).
    return torch.frombuffer(buf, dtype=torch.uint8).view(dtype).view(shape)
