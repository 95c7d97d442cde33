"""Gated MLP (SwiGLU; gelu-tanh for Gemma) with its intermediate dim split over TP: Llama's MLP,
and MoE models' dense layers and shared experts."""

from torch import nn

from engine.layers.activation import act_and_mul
from engine.layers.linear import ColumnParallelLinear, Part, RowParallelLinear
from engine.parallel.parallel_state import tp


class GatedMLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int, act: str = "silu"):
        super().__init__()
        self.act_and_mul = act_and_mul(act)
        part = Part(1, intermediate_size)
        self.gate_up_proj = ColumnParallelLinear(hidden_size, [_split(part), _split(part)],
                                                 bias=False, shard_ids=("gate", "up"))
        self.down_proj = RowParallelLinear(intermediate_size, hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(self.act_and_mul(self.gate_up_proj(x)))


def _split(part: Part) -> Part:
    """An intermediate dimension split evenly over TP ranks (one 'unit' per rank)."""
    size = tp().size
    return Part(size, part.unit // size)
