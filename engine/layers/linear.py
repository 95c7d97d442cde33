"""Megatron-style tensor-parallel linear layers. Sharding is data: each layer records how its
output (column) or input (row) dimension is split, and `load_shard` reads only this rank's slice.

Column-parallel layers may pack several logical matrices (q/k/v, gate/up); each part is split
over the TP ranks separately. A part with fewer heads than ranks is replicated (GQA KV heads).
"""

from dataclasses import dataclass

import torch
from torch import nn

from engine.parallel.parallel_state import tp, tp_all_reduce


@dataclass(frozen=True)
class Part:
    """One logical matrix packed into a column-parallel layer, in units of `unit` rows."""
    units: int  # e.g. number of heads (or 1 for an unsplit-by-head matrix of `unit` rows)
    unit: int  # rows per unit (head_dim, or the full size when units == 1)

    def local_units(self, size: int) -> int:
        return max(1, self.units // size)

    def local_rows(self, size: int) -> int:
        return self.local_units(size) * self.unit

    def row_range(self, rank: int, size: int) -> tuple[int, int]:
        """Rows of the full matrix this rank holds (replicated unit when size > units)."""
        if size <= self.units:
            per = self.units // size
            return rank * per * self.unit, (rank + 1) * per * self.unit
        head = rank * self.units // size
        return head * self.unit, (head + 1) * self.unit


class ColumnParallelLinear(nn.Module):
    """y_local = x @ W_local^T: each rank computes its slice of the output features."""

    def __init__(self, in_features: int, parts: list[Part], bias: bool):
        super().__init__()
        g = tp()
        self.parts = parts
        self.offsets = [0]
        for p in parts:
            self.offsets.append(self.offsets[-1] + p.local_rows(g.size))
        self.weight = nn.Parameter(torch.empty(self.offsets[-1], in_features), requires_grad=False)
        self.bias = (nn.Parameter(torch.empty(self.offsets[-1]), requires_grad=False)
                     if bias else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias)

    def load_shard(self, name: str, part: int, fetch, transposed: bool = False) -> None:
        """Copy this rank's rows of logical matrix `part` (HF tensor `name`) into place.
        `fetch(name, dim, start, end)` reads only that slice; `transposed` for GPT-2's Conv1D."""
        g = tp()
        start, end = self.parts[part].row_range(g.rank, g.size)
        lo, hi = self.offsets[part], self.offsets[part + 1]
        if name.endswith("bias"):
            self.bias.data[lo:hi].copy_(fetch(name, 0, start, end))
        elif transposed:
            self.weight.data[lo:hi].copy_(fetch(name, 1, start, end).t())
        else:
            self.weight.data[lo:hi].copy_(fetch(name, 0, start, end))


class RowParallelLinear(nn.Module):
    """y = all_reduce(x_local @ W_local^T) + b: input features split, partial sums reduced."""

    def __init__(self, in_features: int, out_features: int, bias: bool):
        super().__init__()
        g = tp()
        self.in_local = in_features // g.size
        self.weight = nn.Parameter(torch.empty(out_features, self.in_local), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out_features), requires_grad=False) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = tp_all_reduce(nn.functional.linear(x, self.weight))
        return y + self.bias if self.bias is not None else y

    def load_shard(self, name: str, fetch, transposed: bool = False) -> None:
        if name.endswith("bias"):
            self.bias.data.copy_(fetch(name, None, None, None))
            return
        g = tp()
        start, end = g.rank * self.in_local, (g.rank + 1) * self.in_local
        if transposed:
            self.weight.data.copy_(fetch(name, 0, start, end).t())
        else:
            self.weight.data.copy_(fetch(name, 1, start, end))
