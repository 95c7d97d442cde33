"""Activations by HF name, and gated ones (SwiGLU, Gemma's gelu-tanh) on a packed [gate | up]
projection."""

import torch
from torch import nn

from engine.kernels.build import takes as cpu_kernels_take


def act_fn(name: str):
    return {"silu": nn.functional.silu, "relu": nn.functional.relu,
            "gelu": nn.functional.gelu,
            "gelu_new": lambda x: nn.functional.gelu(x, approximate="tanh"),
            "gelu_pytorch_tanh": lambda x: nn.functional.gelu(x, approximate="tanh")}[name]


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 2 and cpu_kernels_take(x):  # one pass, same rounding
        return torch.ops.onenode.silu_and_mul(x)
    half = x.shape[-1] // 2
    return nn.functional.silu(x[..., :half]) * x[..., half:]


def act_and_mul(name: str):
    """act(gate) * up on a packed [gate | up] projection: SwiGLU's fused kernel for silu."""
    if name == "silu":
        return silu_and_mul
    act = act_fn(name)

    def gated(x: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        return act(x[..., :half]) * x[..., half:]

    return gated
