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


class GemmaRMSNorm(RMSNorm):
    """Gemma's: the weight is stored as an offset from 1 (x * (1 + w)), and the product is taken
    in float32 before the cast back, as HF's Gemma2RMSNorm/Gemma3RMSNorm do (the fused kernel
    casts before multiplying, so it is not used here)."""

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None):
        if residual is not None:
            x = x + residual
            residual = x
        xf = x.float()
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        out = (out * (1.0 + self.weight.float())).to(x.dtype)
        return out if residual is None else (out, residual)
