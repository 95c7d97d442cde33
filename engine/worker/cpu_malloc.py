"""glibc's malloc set up for a CPU engine: a step's large activations reuse freed memory.

By default glibc serves every allocation over 32 MiB (and, until its threshold adapts, over
128 KiB) with a fresh mmap and unmaps it on free, so each large activation of a prefill step (an
8k-token step's gate/up output is 100 MB) is faulted in page by page and zeroed by the kernel,
every layer, every step: ~14 ms of a 25 ms SwiGLU on 2 cores. Serving them from the heap and not
trimming it keeps the pages mapped between layers and steps (what vLLM's CPU backend gets from
tcmalloc, which it asks users to LD_PRELOAD). The cost is that the process keeps its peak
activation memory mapped, as every inference engine's caching allocator does.

Process-wide and glibc-only (musl and others: no-op). ONENODE_CPU_KERNELS=0 leaves malloc alone.
"""

import ctypes
import ctypes.util
import logging

from engine.kernels.build import enabled as cpu_fast_paths

log = logging.getLogger("onenode.worker")

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 1 << 30  # only allocations over 1 GiB are mapped on their own
TRIM_THRESHOLD = (1 << 31) - 1  # never give the heap's top back between steps
_done = False


def keep_freed_memory() -> bool:
    """Tune this process's malloc once; True when glibc took both settings."""
    global _done
    if _done or not cpu_fast_paths():
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and
                 mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    log.debug("malloc keeps freed memory: %s", _done)
    return _done
