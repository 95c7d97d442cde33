"""YaRN rope scaling as DeepSeek-V3 (and R1, Kimi-K2) configure it, kept apart from rotary.py so
the shared rope module can absorb it: the lead switches DeepSeek to that module at merge.

HF's `_compute_yarn_parameters` and `yarn_apply_mscale`, in the same float32 steps:
- inverse frequencies blend interpolation (divided by `factor`) for long wavelengths with
  extrapolation (unchanged) for short ones, over a linear ramp between the dimensions that turn
  `beta_fast` and `beta_slow` times within `original_max_position_embeddings`;
- cos and sin are multiplied by `attention_factor` (mscale / mscale_all_dim), so q_pe . k_pe
  carries it squared;
- the softmax scale is multiplied by mscale(factor, mscale_all_dim)^2 (DeepSeek's attention).
"""

import math

import torch

from engine.layers.rotary import RotaryEmbedding


def yarn_get_mscale(scale: float, mscale: float = 1.0) -> float:
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def _rope_type(scaling: dict | None) -> str:
    return (scaling or {}).get("rope_type") or (scaling or {}).get("type") or "default"


def _factor(scaling: dict, max_positions: int) -> float:
    """DeepSeek configs may omit `factor`: HF then uses the ratio of the context lengths."""
    return scaling.get("factor") or max_positions / scaling["original_max_position_embeddings"]


def yarn_parameters(dim: int, theta: float, scaling: dict,
                    max_positions: int) -> tuple[torch.Tensor, float]:
    """(inverse frequencies [dim/2] float32, attention_factor applied to cos and sin)."""
    factor = _factor(scaling, max_positions)
    attention_factor = scaling.get("attention_factor")
    mscale, mscale_all_dim = scaling.get("mscale"), scaling.get("mscale_all_dim")
    if attention_factor is None:
        attention_factor = (yarn_get_mscale(factor, mscale) /
                            yarn_get_mscale(factor, mscale_all_dim)
                            if mscale and mscale_all_dim else yarn_get_mscale(factor))
    beta_fast, beta_slow = scaling.get("beta_fast") or 32, scaling.get("beta_slow") or 1
    original = scaling["original_max_position_embeddings"]

    def correction_dim(rotations: float) -> float:
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # HF's guard against a zero-width ramp
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    pos_freqs = theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    extrapolation = 1 - ramp
    inv = (1.0 / (factor * pos_freqs)) * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation
    return inv, float(attention_factor)


def softmax_mscale(scaling: dict | None, max_positions: int) -> float:
    """What DeepSeek multiplies its softmax scale by: mscale(factor, mscale_all_dim)^2 for any
    non-default rope type whose config sets mscale_all_dim, else 1."""
    if _rope_type(scaling) == "default" or not scaling.get("mscale_all_dim"):
        return 1.0
    m = yarn_get_mscale(_factor(scaling, max_positions), scaling["mscale_all_dim"])
    return m * m


class YarnRotaryEmbedding(RotaryEmbedding):
    """RotaryEmbedding whose tables come from YaRN when the config asks for it (plain rope
    otherwise), with cos/sin scaled by the attention factor as HF does."""

    def _build(self, device, dtype, upto: int) -> None:
        if _rope_type(self.scaling) != "yarn":
            return super()._build(device, dtype, upto)
        inv, attention_factor = yarn_parameters(self.head_dim, self.theta, self.scaling,
                                                self.max_positions)
        freqs = torch.outer(torch.arange(upto, device=device, dtype=torch.float32),
                            inv.to(device))
        self.cos = (freqs.cos() * attention_factor).to(dtype)
        self.sin = (freqs.sin() * attention_factor).to(dtype)

