"""Whether a prefill sequence's attention runs in the C++ CPU kernel
(engine/kernels/prefill_attention.cpp) instead of SDPA.

The kernel takes one sequence, causal, its queries the last of its positions (a cached prefix
first), in float32 or bfloat16, head_dim a multiple of 16, on a CPU with AVX-512: ~4x
PyTorch's CPU flash kernel on SmolLM2's heads at a few hundred tokens (where batches hold most
prompts), ~3x at 3k (docs/performance.md). A sliding window that hides keys, soft-capped scores and
padded multi-sequence batches stay on SDPA. ONENODE_CPU_KERNELS=0 turns it off with the others.
"""

import functools

import torch

from engine.kernels.build import load as load_cpu_kernels
from engine.layers.sliding_window import narrows

DTYPES = (torch.float32, torch.bfloat16)


@functools.cache
def _supported() -> bool:
    return load_cpu_kernels() and torch.ops.onenode.prefill_attention_supported()


def takes(q: torch.Tensor, length: int, sliding_window: int | None) -> bool:
    """Whether the kernel computes this sequence: q [n, h, d] on CPU, `length` keys."""
    return (q.device.type == "cpu" and q.dtype in DTYPES and q.shape[-1] % 16 == 0
            and not narrows(length, sliding_window) and _supported())


def attend(q: torch.Tensor, keys: torch.Tensor, vals: torch.Tensor, scale: float) -> torch.Tensor:
    """q [n, h, d] at the last n of len positions; keys, vals [len, kvh, d] -> [n, h*d]."""
    return torch.ops.onenode.prefill_attention(q, keys, vals, scale, keys.shape[0] - q.shape[0])
