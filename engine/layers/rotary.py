"""Rotary position embedding (HF's rotate-half layout), with linear and llama3 frequency scaling."""

import math

import torch
from torch import nn

from engine.kernels.build import takes as cpu_kernels_take


def inv_frequencies(head_dim: int, theta: float, scaling: dict | None) -> torch.Tensor:
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    kind = (scaling or {}).get("rope_type") or (scaling or {}).get("type")
    if kind == "linear":
        inv = inv / scaling["factor"]
    elif kind == "llama3":
        inv = _llama3(inv, scaling)
    return inv.float()


def _llama3(inv: torch.Tensor, s: dict) -> torch.Tensor:
    """Llama 3.1's scaling: long wavelengths divided by `factor`, short kept, smooth between."""
    factor, low, high = s["factor"], s.get("low_freq_factor", 1.0), s.get("high_freq_factor", 4.0)
    old_len = s.get("original_max_position_embeddings", 8192)
    low_wavelen, high_wavelen = old_len / low, old_len / high
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > low_wavelen, inv / factor, inv)
    smooth = (old_len / wavelen - low) / (high - low)
    mid = (1 - smooth) * scaled / factor + smooth * scaled
    is_mid = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(is_mid, mid, scaled)


class RotaryEmbedding(nn.Module):
    """One instance serves every layer of a model: the cos/sin rows for a step's positions are
    looked up by the first layer and reused by the others (same `positions` tensor)."""

    def __init__(self, head_dim: int, max_positions: int, theta: float, scaling: dict | None):
        super().__init__()
        self.head_dim = head_dim
        self.max_positions = max_positions
        self.theta, self.scaling = theta, scaling
        self.cos = self.sin = None
        self._step: tuple | None = None  # (positions, cos rows, sin rows)

    def _build(self, device, dtype, upto: int) -> None:
        inv = inv_frequencies(self.head_dim, self.theta, self.scaling).to(device)
        t = torch.arange(upto, device=device, dtype=torch.float32)
        freqs = torch.outer(t, inv)
        self.cos = freqs.cos().to(dtype)
        self.sin = freqs.sin().to(dtype)

    def _rows(self, positions: torch.Tensor, like: torch.Tensor):
        if self._step is not None and self._step[0] is positions:
            return self._step[1], self._step[2]
        need = int(positions.max()) + 1 if positions.numel() else 1
        if self.cos is None or self.cos.shape[0] < need or self.cos.device != like.device \
                or self.cos.dtype != like.dtype:
            self._build(like.device, like.dtype, max(need, self.max_positions))
        cos, sin = self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)
        self._step = (positions, cos, sin)
        return cos, sin

    def forward(self, positions: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """x: [T, heads, d] (queries and keys side by side) -> a rotated copy."""
        cos, sin = self._rows(positions, x)
        if x.stride(-1) == 1 and x.stride(1) == x.shape[-1] and cpu_kernels_take(x):
            # one pass, same rounding
            return torch.ops.onenode.rotary(x, cos.squeeze(1), sin.squeeze(1))
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
