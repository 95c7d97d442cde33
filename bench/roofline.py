"""Rooflines of this machine: its measured GEMM peak and memory bandwidth, and the fraction of
each a run reached (pure arithmetic apart from the two measurements)."""

import time

import torch


def _sync(device: str):
    return torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)


def gemm_peak_gflops(dtype: torch.dtype = torch.float32, n: int = 1024, repeats: int = 20,
                     device: str = "cpu") -> float:
    if torch.device(device).type == "cuda":
        n, repeats = 8192, 50  # a GPU needs large tiles to approach its peak
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    sync = _sync(device)
    for _ in range(3):
        a @ b
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def memory_bandwidth_gbs(device: str = "cpu", mib: int = 1024, repeats: int = 5) -> float:
    """Streaming-read bandwidth in GB/s: a sum over a buffer far larger than any cache, the
    same access a batch-1 decode step makes to the weights."""
    x = torch.ones(mib * 2**20 // 4, dtype=torch.float32, device=device)
    sync = _sync(device)
    x.sum()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        x.sum()
    sync()
    return x.numel() * 4 * repeats / (time.perf_counter() - start) / 1e9


def model_gflops(num_params: int, tokens: int) -> float:
    """Dense matmul FLOPs: 2 x params per token (attention scores are small at these lengths)."""
    return 2 * num_params * tokens / 1e9


def decode_bandwidth_gbs(num_params: int, bytes_per_param: int, tokens_per_s: float) -> float:
    """GB/s a batch-1 decode reads: every weight once per token (a tied LM head counts once)."""
    return num_params * bytes_per_param * tokens_per_s / 1e9
