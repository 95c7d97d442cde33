"""Megatron-style tensor-parallel linear layers. Sharding is data: each layer records how its
output (column) or input (row) dimension is split, and its parameters' `weight_loader` reads only
this rank's slice.

Column-parallel layers may pack several logical matrices (q/k/v, gate/up); each part is split
over the TP ranks separately. A part with fewer heads than ranks is replicated (GQA KV heads).
"""

import os
from dataclasses import dataclass

import torch
from torch import nn

from engine.kernels.build import cpu_vendor
from engine.kernels.build import enabled as cpu_fast_paths
from engine.kernels.build import takes as cpu_kernels_take
from engine.parallel.parallel_state import tp, tp_all_reduce
from onenode.errors import ConfigError

# oneDNN's blocked weight layout. Where MKL's sgemm is slow (AMD CPUs, where MKL takes a generic
# path) it beats MKL on a plain [out, in] weight by 10-20 % on prefill and 1.4-2x on decode
# batches; on Intel CPUs MKL is as fast from 32 rows up and the skinny kernel is faster below, so
# weights stay plain there (docs/performance.md). The hint is the expected rows.
PACK_ROWS_HINT = 64
LAYOUTS = ("auto", "plain", "onednn")  # ONENODE_CPU_WEIGHT_LAYOUT

# Up to this many rows (small-batch decode) a GEMM is mostly a weight read; the C++ kernel
# (engine/kernels/skinny_gemm.cpp) streams a plain weight at ~20 GB/s on 2 cores, where MKL and
# oneDNN reach 11-16 GB/s. Beyond it MKL (or oneDNN, when packed) is as fast or faster.
SKINNY_ROWS = 16


def weight_layout() -> str:
    """The CPU weight layout: ONENODE_CPU_WEIGHT_LAYOUT=plain|onednn, or by default oneDNN's where
    the CPU is not Intel's (MKL's own speed there is the reason to pack), else plain."""
    choice = os.environ.get("ONENODE_CPU_WEIGHT_LAYOUT", "auto")
    if choice not in LAYOUTS:
        raise ConfigError(f"ONENODE_CPU_WEIGHT_LAYOUT={choice!r}; use one of {', '.join(LAYOUTS)}")
    if choice != "auto":
        return choice
    return "plain" if cpu_vendor() == "GenuineIntel" else "onednn"


def pack_cpu_weights(model: nn.Module) -> int:
    """Reorder every CPU weight a module marks packable (`packed = None`: the parallel linears,
    and an LM head) into oneDNN's layout, in place of the plain one (no second copy). A weight
    another module also reads (an LM head tied to this stage's embedding) stays plain. Returns
    how many were packed; 0 where oneDNN is missing, ONENODE_CPU_KERNELS=0 or the layout is
    plain (`weight_layout`), and those layers call MKL or the skinny kernel through `linear`."""
    if not (torch.backends.mkldnn.is_available() and cpu_fast_paths()) \
            or weight_layout() != "onednn":
        return 0
    owners: dict[int, int] = {}
    for m in model.modules():
        for p in m.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    packed = 0
    for m in model.modules():
        if getattr(m, "packed", False) is None and m.weight.device.type == "cpu" \
                and owners[id(m.weight)] == 1:
            m.packed = torch.ops.mkldnn._reorder_linear_weight(m.weight.data, PACK_ROWS_HINT)
            m.weight.data = m.weight.data.new_empty(0)
            packed += 1
    return packed


def packed_forward(module, x: torch.Tensor) -> torch.Tensor:
    """x @ module's weight^T (+ bias): oneDNN's GEMM once pack_cpu_weights packed it."""
    if module.packed is not None:
        return torch.ops.mkldnn._linear_pointwise(x, module.packed, module.bias, "none", [], "")
    return linear(x, module.weight, module.bias)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None):
    """x @ weight^T (+ bias), through the skinny CPU kernel when x has few rows."""
    if x.dim() == 2 and x.shape[0] <= SKINNY_ROWS and weight.is_contiguous() \
            and cpu_kernels_take(x):
        return torch.ops.onenode.skinny_gemm(x, weight, bias)
    return nn.functional.linear(x, weight, bias)


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
    """y_local = x @ W_local^T: each rank computes its slice of the output features.

    `shard_ids` name the packed parts (("q", "k", "v"), (0, 1)); a checkpoint tensor loaded with a
    shard id fills that part, one loaded without fills all parts (GPT-2's fused c_attn).
    `transposed`: the checkpoint stores [in, out] (GPT-2's Conv1D)."""

    def __init__(self, in_features: int, parts: list[Part], bias: bool,
                 shard_ids: tuple | None = None, transposed: bool = False):
        super().__init__()
        g = tp()
        self.parts, self.transposed = parts, transposed
        self.shard_ids = tuple(shard_ids or range(len(parts)))
        self.offsets = [0]
        for p in parts:
            self.offsets.append(self.offsets[-1] + p.local_rows(g.size))
        self.weight = _param(torch.empty(self.offsets[-1], in_features), self, self.shard_ids)
        self.bias = _param(torch.empty(self.offsets[-1]), self, self.shard_ids) if bias else None
        self.packed: torch.Tensor | None = None  # oneDNN's layout, set by pack_cpu_weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return packed_forward(self, x)

    def weight_loader(self, param, fetch, shard_id=None) -> None:
        """Copy this rank's rows of part `shard_id` (or of every part, read from one tensor
        holding them all at their full sizes) into place."""
        g = tp()
        full_offset = 0
        for j, part in enumerate(self.parts):
            if shard_id is None or self.shard_ids[j] == shard_id:
                start, end = part.row_range(g.rank, g.size)
                if shard_id is None:
                    start, end = start + full_offset, end + full_offset
                dim = 1 if self.transposed and param.dim() == 2 else 0
                rows = fetch(dim, start, end)
                param.data[self.offsets[j]:self.offsets[j + 1]].copy_(rows.t() if dim else rows)
            full_offset += part.units * part.unit


class RowParallelLinear(nn.Module):
    """y = all_reduce(x_local @ W_local^T) + b: input features split, partial sums reduced."""

    def __init__(self, in_features: int, out_features: int, bias: bool,
                 transposed: bool = False):
        super().__init__()
        g = tp()
        self.in_local, self.transposed = in_features // g.size, transposed
        self.weight = _param(torch.empty(out_features, self.in_local), self)
        self.bias = _param(torch.empty(out_features)) if bias else None
        self.packed: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:  # bias after the reduce: added once, not per rank
            y = torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")
        else:
            y = linear(x, self.weight)
        y = tp_all_reduce(y)
        return y + self.bias if self.bias is not None else y

    def weight_loader(self, param, fetch, shard_id=None) -> None:
        g = tp()
        start, end = g.rank * self.in_local, (g.rank + 1) * self.in_local
        if self.transposed:
            param.data.copy_(fetch(0, start, end).t())
        else:
            param.data.copy_(fetch(1, start, end))


def _param(data: torch.Tensor, owner: nn.Module | None = None, shard_ids=None) -> nn.Parameter:
    """A frozen parameter carrying its owner's loader (none: the whole tensor is copied)."""
    p = nn.Parameter(data, requires_grad=False)
    if owner is not None:
        p.weight_loader = owner.weight_loader
    if shard_ids is not None and len(shard_ids) > 1:
        p.shard_ids = shard_ids
    return p
