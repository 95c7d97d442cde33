"""FusedMoE: all routed experts of one MoE layer as two stacked weights, and their computation.

`gate_up_proj` [E_local, 2 I_local, H] (gate rows, then up rows) and `down_proj`
[E_local, H, I_local], the layout HF transformers v5 uses in memory. With expert parallelism a rank
holds E / ep_size whole experts (a contiguous range of global ids); without it every expert with
its intermediate dim sliced over TP, like a dense MLP. The weight loader takes a checkpoint's
per-expert tensors (`experts.<id>.gate_proj` / `w1` ...) or HF's stacked ones into place.

The computation sorts the (token, expert) pairs by expert once, then runs the experts on their
contiguous blocks of tokens: on CPU with torch's grouped_mm (one call per projection for all
experts), elsewhere one GEMM pair per active local expert (HF's eager path loops over experts with
a one-hot mask, a `where` and an index_add each). docs/performance.md has the figures.
"""

import torch
from torch import nn
from torch.nn import functional as F

from engine.layers.activation import silu_and_mul
from engine.layers.expert_dispatch import make_dispatch
from engine.kernels.build import enabled as cpu_fast_paths
from engine.layers.linear import SKINNY_ROWS, linear
from engine.parallel.parallel_state import ep, tp
from onenode.errors import ModelLoadError

# Checkpoint name of one expert's matrix -> (stacked parameter, part), for models' loaders.
EXPERT_MAPPING = {"gate_proj": ("gate_up_proj", "gate"), "up_proj": ("gate_up_proj", "up"),
                  "down_proj": ("down_proj", "down")}
MIXTRAL_EXPERT_MAPPING = {"w1": ("gate_up_proj", "gate"), "w3": ("gate_up_proj", "up"),
                          "w2": ("down_proj", "down")}


class FusedMoE(nn.Module):
    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int):
        super().__init__()
        split = ep()
        if split.size > 1:  # whole experts per rank
            self.num_local = num_experts // split.size
            self.first, self.inter, self.slice_rank = split.rank * self.num_local, \
                intermediate_size, 0
        else:  # every expert, intermediate dim sliced like a dense MLP
            self.num_local, self.first = num_experts, 0
            self.inter, self.slice_rank = intermediate_size // tp().size, tp().rank
        self.num_experts, self.full_inter = num_experts, intermediate_size
        self.gate_up_proj = self._param((self.num_local, 2 * self.inter, hidden_size),
                                        [(e, p) for e in range(num_experts) for p in ("gate", "up")])
        self.down_proj = self._param((self.num_local, hidden_size, self.inter),
                                     [(e, "down") for e in range(num_experts)])
        self.dispatch = make_dispatch()
        self.routed_tokens = 0  # (token, expert) pairs this rank computed: the expert load

    def _param(self, shape, shard_ids) -> nn.Parameter:
        p = nn.Parameter(torch.empty(shape), requires_grad=False)
        p.weight_loader, p.shard_ids = self.weight_loader, tuple(shard_ids)
        return p

    def forward(self, x: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor):
        x, weights, ids = self.dispatch.dispatch(x, weights, ids)
        return self.dispatch.combine(self.local_experts(x, weights, ids)).to(x.dtype)

    def local_experts(self, x, weights, ids) -> torch.Tensor:
        """sum_k weight_k * expert_k(x) over this rank's experts (or slices), in fp32: as in HF,
        each token's k outputs are summed before rounding to the model dtype, in expert order."""
        k = ids.shape[1]
        local = ids.flatten() - self.first
        local = torch.where((local >= 0) & (local < self.num_local), local, self.num_local)
        order = local.argsort(stable=True)  # by expert; off-rank pairs (id num_local) last
        counts = torch.bincount(local, minlength=self.num_local + 1).tolist()
        n = len(order) - counts[-1]
        self.routed_tokens += n
        order = order[:n]
        tokens = order // k
        xs = x[tokens]
        if n and _grouped_mm_takes(xs):
            ys = self._grouped(xs, torch.tensor(counts[:-1], device=x.device))
        else:
            ys = self._looped(xs, counts[:-1])
        w = weights.flatten()[order].unsqueeze(1)
        # In place where the dtype allows (no new [n, H] buffer to fault in); a bf16 model with
        # fp32 router weights (Mixtral, DeepSeek) multiplies in fp32, as HF does.
        ys = ys.mul_(w) if w.dtype == ys.dtype else ys * w
        return torch.zeros(x.shape, dtype=torch.float32, device=x.device).index_add_(
            0, tokens, ys.float())

    def _grouped(self, xs: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Both GEMMs of every expert in one call each (torch's grouped_mm: on CPU one MKL GEMM
        per expert block, the same bits as the loop's F.linear, without Python per expert)."""
        offs = counts.cumsum(0).to(torch.int32)
        h = silu_and_mul(F.grouped_mm(xs, self.gate_up_proj.transpose(1, 2), offs=offs))
        return F.grouped_mm(h, self.down_proj.transpose(1, 2), offs=offs)

    def _looped(self, xs: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """One GEMM pair per active expert; one split/unbind each instead of a slice and a
        select per expert (at decode shapes those views cost as much as the GEMM calls)."""
        ys = torch.empty_like(xs)
        pairs = zip(counts, xs.split(counts), ys.split(counts), self.gate_up_proj.unbind(0),
                    self.down_proj.unbind(0))
        for c, x_e, y_e, gate_up, down in pairs:
            if c:
                _linear_into(silu_and_mul(linear(x_e, gate_up)), down, y_e)
        return ys

    def weight_loader(self, param, fetch, shard_id=None) -> None:
        """Per-expert tensors: shard (expert id, "gate" | "up" | "down"); experts on other ranks
        are never read. shard None: HF's stacked [E, 2I, H] / [E, H, I] tensor."""
        lo, hi = self.slice_rank * self.inter, (self.slice_rank + 1) * self.inter
        if shard_id is None:
            return self._load_stacked(param, fetch(None, None, None), lo, hi)
        expert, part = shard_id
        e = expert - self.first
        if not 0 <= e < self.num_local:
            return
        if part == "down":
            _copy(param.data[e], fetch(1, lo, hi))
        else:
            rows = slice(0, self.inter) if part == "gate" else slice(self.inter, 2 * self.inter)
            _copy(param.data[e, rows], fetch(0, lo, hi))

    def _load_stacked(self, param, full: torch.Tensor, lo: int, hi: int) -> None:
        mine = full[self.first:self.first + self.num_local]
        if param is self.down_proj:
            _copy(param.data, mine[:, :, lo:hi])
        else:
            f = self.full_inter
            _copy(param.data, torch.cat([mine[:, lo:hi], mine[:, f + lo:f + hi]], dim=1))


def _grouped_mm_takes(xs: torch.Tensor) -> bool:
    """torch >= 2.10 has a CPU grouped_mm (fp32 and bf16). Elsewhere the loop: CUDA's wants
    bf16 on sm80+, and the loop's per-expert launches matter less next to a GPU's GEMMs."""
    return xs.device.type == "cpu" and hasattr(F, "grouped_mm") and cpu_fast_paths()


def _linear_into(x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor) -> None:
    """out = x @ weight^T, the GEMM writing straight into `out` (a block of rows of the sorted
    output) where it is MKL's: the same call F.linear makes, without the copy after it."""
    if x.shape[0] <= SKINNY_ROWS or x.dtype != out.dtype:
        out.copy_(linear(x, weight))
    else:
        torch.mm(x, weight.t(), out=out)


def _copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    if tuple(dst.shape) != tuple(src.shape):
        raise ModelLoadError(f"expert tensor has shape {tuple(src.shape)}, the model expects "
                             f"{tuple(dst.shape)}; is config.json's moe_intermediate_size right "
                             f"for these weights?")
    dst.copy_(src)


def expert_load(model: nn.Module) -> int:
    """(token, expert) pairs routed to this rank's experts since the last reset, all layers."""
    return sum(m.routed_tokens for m in model.modules() if isinstance(m, FusedMoE))


def reset_expert_load(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, FusedMoE):
            m.routed_tokens = 0
