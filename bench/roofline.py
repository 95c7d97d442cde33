"""Measured GEMM peak of this machine and the fraction of it a run reached."""

import time

import torch


def gemm_peak_gflops(dtype: torch.dtype = torch.float32, n: int = 1024, repeats: int = 20) -> float:
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def model_gflops(num_params: int, tokens: int) -> float:
    """Dense matmul FLOPs: 2 x params per token (attention scores are small at these lengths)."""
    return 2 * num_params * tokens / 1e9
