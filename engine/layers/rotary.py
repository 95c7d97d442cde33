"""Rotary position embedding (HF's rotate-half layout) applied to queries and keys, with the
frequencies of any rope type engine/layers/rope_scaling.py computes, partial rotation (the first
rotary_dim features of a head) and the attention factor folded into cos and sin as HF does.

Length-dependent types pick their frequencies per token from the length of that token's sequence
(`AttentionMetadata.rope_lens`: the sequence's known tokens when the step was scheduled), which is
what HF's generate does for a single sequence: the prompt is rotated with the frequencies of its
whole length, each later token with those of the sequence up to it.
- dynamic: frequencies of max(length, max_position_embeddings); keys keep the rotation they were
  written with (HF's cache does the same).
- longrope: short factors up to original_max_position_embeddings, long factors past it; the
  scheduler recomputes a sequence's KV when it crosses that length (HF's Phi-3 drops its cache
  there), so every cached key uses the factors of the current length.
"""

import torch
from torch import nn

from engine.kernels.build import takes as cpu_kernels_take
from engine.layers.rope_scaling import Rope, attention_factor, inv_freq


class RotaryEmbedding(nn.Module):
    """One instance serves every layer of a model: the cos/sin rows for a step's positions are
    computed by the first layer and reused by the others (same `positions` tensor)."""

    def __init__(self, head_dim: int, max_positions: int, theta: float, scaling: dict | None,
                 partial_rotary_factor: float = 1.0):
        super().__init__()
        self.rope = Rope(head_dim, theta, max_positions, scaling, partial_rotary_factor)
        self.head_dim, self.rotary_dim = head_dim, self.rope.rotary_dim
        self.max_positions = max_positions
        self.scale = attention_factor(self.rope)
        self.tables: dict[str, tuple] = {}  # "short" / "long" -> (cos, sin) by position
        self._step: tuple | None = None  # (positions, cos rows, sin rows)

    def _cos_sin(self, freqs: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        # In fp32, scaled, then cast: HF's order of rounding.
        return (freqs.cos() * self.scale).to(dtype), (freqs.sin() * self.scale).to(dtype)

    def _table(self, name: str, like: torch.Tensor, need: int):
        table = self.tables.get(name)
        if table is None or table[0].shape[0] < need or table[0].device != like.device \
                or table[0].dtype != like.dtype:
            seq_len = self.rope.original_max_positions + 1 if name == "long" else None
            inv = torch.tensor(inv_freq(self.rope, seq_len), dtype=torch.float32,
                               device=like.device)
            t = torch.arange(max(need, self.max_positions), device=like.device,
                             dtype=torch.float32)
            table = self.tables[name] = self._cos_sin(torch.outer(t, inv), like.dtype)
        return table

    def _lookup(self, name: str, positions: torch.Tensor, like: torch.Tensor):
        need = int(positions.max()) + 1 if positions.numel() else 1
        cos, sin = self._table(name, like, need)
        return cos[positions], sin[positions]

    def _dynamic(self, positions, lens, like):
        """Frequencies for each distinct sequence length in the step (a handful)."""
        lens = lens.clamp(min=self.rope.max_position_embeddings)
        distinct, which = torch.unique(lens, return_inverse=True)
        inv = torch.tensor([inv_freq(self.rope, n) for n in distinct.tolist()],
                           dtype=torch.float32, device=like.device)
        return self._cos_sin(positions.float()[:, None] * inv[which], like.dtype)

    def _rows(self, positions: torch.Tensor, lens: torch.Tensor | None, like: torch.Tensor):
        if self._step is not None and self._step[0] is positions:
            return self._step[1], self._step[2]
        if lens is None:
            lens = positions + 1  # no scheduler behind this step (warm-up, profiling)
        if self.rope.kind == "dynamic":
            cos, sin = self._dynamic(positions, lens, like)
        else:
            cos, sin = self._lookup("short", positions, like)
            if self.rope.kind == "longrope":
                long = (lens > self.rope.original_max_positions)[:, None]
                if bool(long.any()):
                    cos_l, sin_l = self._lookup("long", positions, like)
                    cos, sin = torch.where(long, cos_l, cos), torch.where(long, sin_l, sin)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        self._step = (positions, cos, sin)
        return cos, sin

    def forward(self, positions: torch.Tensor, x: torch.Tensor, meta=None) -> torch.Tensor:
        """x: [T, heads, d] (queries and keys side by side) -> a rotated copy."""
        cos, sin = self._rows(positions, getattr(meta, "rope_lens", None), x)
        if self.rotary_dim < self.head_dim:
            rot = self.rotary_dim
            return torch.cat((_rotate(x[..., :rot], cos, sin), x[..., rot:]), dim=-1)
        if x.stride(-1) == 1 and x.stride(1) == x.shape[-1] and cpu_kernels_take(x):
            # one pass, same rounding
            return torch.ops.onenode.rotary(x, cos.squeeze(1), sin.squeeze(1))
        return _rotate(x, cos, sin)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)
