"""RMSNorm with an optional fused residual add (the residual stream is carried between layers)."""

import torch
from torch import nn

from engine.kernels.build import takes as cpu_kernels_take


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim), requires_grad=False)

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        if x.dim() == 2 and cpu_kernels_take(x):  # one pass, same rounding
            out, summed = torch.ops.onenode.rms_norm(x, residual, self.weight, self.eps)
            return out if residual is None else (out, summed)
        if residual is not None:
            x = x + residual
            residual = x
        var = x.float().pow(2).mean(-1, keepdim=True)
        out = (x.float() * torch.rsqrt(var + self.eps)).to(x.dtype) * self.weight
        return out if residual is None else (out, residual)
