"""Rope frequency scaling, every type HF defines: default, linear, dynamic (NTK), yarn, longrope,
llama3. Pure functions of a model's rope parameters (and, for `dynamic` and `longrope`, of the
sequence's length) that give the inverse frequencies, the attention factor (HF's
`attention_scaling`, a multiplier on cos and sin) and how many positions the model supports.

Formula for formula transformers.modeling_rope_utils; tests/engine/layers/test_rope_scaling.py
checks each type against its ROPE_INIT_FUNCTIONS past original_max_position_embeddings. Pure
Python (no torch) so config checks and the planner can ask for the position limit.
"""

import math
from dataclasses import dataclass

KINDS = ("default", "linear", "dynamic", "yarn", "longrope", "llama3")
# Types whose frequencies depend on the sequence's length (rotary.py picks them per token).
LENGTH_DEPENDENT = ("dynamic", "longrope")
# Types whose config carries the pre-training context (HF's standardize_rope_params).
_WITH_ORIGINAL = ("llama3", "yarn", "longrope")


@dataclass(frozen=True)
class Rope:
    """A model's rotary embedding: `scaling` is HF's rope_scaling / rope_parameters dict,
    normalized by `normalize_scaling` (None for plain rope)."""
    head_dim: int
    theta: float = 10000.0
    max_position_embeddings: int = 2048
    scaling: dict | None = None
    partial_rotary_factor: float = 1.0

    @property
    def kind(self) -> str:
        return (self.scaling or {}).get("rope_type", "default")

    @property
    def rotary_dim(self) -> int:
        """Leading features of each head that rotate (Phi-4-mini rotates 3/4); the rest pass."""
        return int(self.head_dim * self.partial_rotary_factor)

    @property
    def original_max_positions(self) -> int:
        return int((self.scaling or {}).get("original_max_position_embeddings")
                   or self.max_position_embeddings)

    def param(self, name: str, default=None):
        value = (self.scaling or {}).get(name)
        return default if value is None else value


def normalize_scaling(scaling: dict | None, cfg: dict) -> dict | None:
    """HF's standardize_rope_params for one flat dict: `rope_type` set (old `type` accepted),
    `original_max_position_embeddings` filled for the types that use it, a top-level one
    (Phi-3's) taking priority; rope_theta and partial_rotary_factor are read by the caller.
    Unknown types raise ValueError naming the supported ones."""
    params = {k: v for k, v in (scaling or {}).items()
              if k not in ("rope_theta", "partial_rotary_factor", "type")}
    kind = (scaling or {}).get("rope_type") or (scaling or {}).get("type") or "default"
    if kind not in KINDS:
        raise ValueError(f"rope type {kind!r} is not supported; onenode supports "
                         f"{', '.join(KINDS)}")
    if kind == "default":
        return None
    params["rope_type"] = kind
    if kind in _WITH_ORIGINAL:
        top = cfg.get("original_max_position_embeddings")
        if top:
            params["original_max_position_embeddings"] = top
        params.setdefault("original_max_position_embeddings", cfg.get("max_position_embeddings"))
    return params


def inv_freq(rope: Rope, seq_len: int | None = None) -> list[float]:
    """Inverse frequencies (rotary_dim / 2 of them) for a sequence of `seq_len` tokens
    (None: the frequencies HF starts with, before any sequence is seen)."""
    return _INV[rope.kind](rope, seq_len)


def _powers(rope: Rope, theta: float) -> list[float]:
    dim = rope.rotary_dim
    return [theta ** (i / dim) for i in range(0, dim, 2)]


def _default(rope: Rope, seq_len) -> list[float]:
    return [1.0 / p for p in _powers(rope, rope.theta)]


def _linear(rope: Rope, seq_len) -> list[float]:
    return [f / rope.param("factor") for f in _default(rope, seq_len)]


def _dynamic(rope: Rope, seq_len) -> list[float]:
    """NTK-aware: the base grows with the length past max_position_embeddings (HF measures from
    max_position_embeddings here, not from original_max_position_embeddings)."""
    factor, dim, mpe = rope.param("factor"), rope.rotary_dim, rope.max_position_embeddings
    length = max(seq_len or mpe, mpe)
    theta = rope.theta * ((factor * length / mpe) - (factor - 1)) ** (dim / (dim - 2))
    return [1.0 / p for p in _powers(rope, theta)]


def _yarn(rope: Rope, seq_len) -> list[float]:
    """YaRN: high frequencies kept (extrapolated), low ones divided by `factor` (interpolated),
    a linear ramp between the dimensions where beta_fast and beta_slow rotations fit."""
    factor = _yarn_factor(rope)
    dim, base, orig = rope.rotary_dim, rope.theta, rope.original_max_positions
    beta_fast, beta_slow = rope.param("beta_fast") or 32, rope.param("beta_slow") or 1

    def correction_dim(rotations: float) -> float:
        return dim * math.log(orig / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if rope.param("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # HF's guard against a zero-width ramp
    out = []
    for j, p in enumerate(_powers(rope, base)):
        extrapolate = 1 - min(max((j - low) / (high - low), 0.0), 1.0)
        out.append((1 / (factor * p)) * (1 - extrapolate) + (1 / p) * extrapolate)
    return out


def _longrope(rope: Rope, seq_len) -> list[float]:
    """Per-frequency factors: `long_factor` once the sequence is longer than the original
    context, `short_factor` up to it."""
    long = seq_len is not None and seq_len > rope.original_max_positions
    factors = rope.param("long_factor" if long else "short_factor")
    return [1.0 / (f * p) for f, p in zip(factors, _powers(rope, rope.theta), strict=True)]


def _llama3(rope: Rope, seq_len) -> list[float]:
    """Llama 3.1: long wavelengths divided by `factor`, short ones kept, smooth between."""
    factor, low, high = rope.param("factor"), rope.param("low_freq_factor", 1.0), \
        rope.param("high_freq_factor", 4.0)
    old_len = rope.original_max_positions
    out = []
    for f in _default(rope, seq_len):
        wavelen = 2 * math.pi / f
        scaled = f / factor if wavelen > old_len / low else f
        if old_len / high <= wavelen <= old_len / low:
            smooth = (old_len / wavelen - low) / (high - low)
            scaled = (1 - smooth) * scaled / factor + smooth * scaled
        out.append(scaled)
    return out


_INV = {"default": _default, "linear": _linear, "dynamic": _dynamic, "yarn": _yarn,
        "longrope": _longrope, "llama3": _llama3}


def yarn_get_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN's magnitude correction; DeepSeek also folds mscale_all_dim's into the softmax scale."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def _yarn_factor(rope: Rope) -> float:
    return rope.param("factor") or rope.max_position_embeddings / rope.original_max_positions


def softmax_mscale(rope: Rope) -> float:
    """What DeepSeek multiplies its softmax scale by: mscale(factor, mscale_all_dim)^2 when its
    rope is scaled and the config sets mscale_all_dim, else 1 (HF's yarn_apply_mscale)."""
    if rope.kind == "default" or not rope.param("mscale_all_dim"):
        return 1.0
    m = yarn_get_mscale(_yarn_factor(rope), rope.param("mscale_all_dim"))
    return m * m


def attention_factor(rope: Rope) -> float:
    """HF's attention_scaling: cos and sin are multiplied by it (yarn and longrope only)."""
    explicit = rope.param("attention_factor")
    if rope.kind == "yarn":
        if explicit is not None:
            return float(explicit)
        factor, mscale, all_dim = _yarn_factor(rope), rope.param("mscale"), \
            rope.param("mscale_all_dim")
        if mscale and all_dim:
            return yarn_get_mscale(factor, mscale) / yarn_get_mscale(factor, all_dim)
        return yarn_get_mscale(factor)
    if rope.kind == "longrope":
        if explicit is not None:
            return float(explicit)
        orig = rope.original_max_positions
        factor = rope.param("factor") or rope.max_position_embeddings / orig
        return 1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(orig))
    return 1.0


def max_positions(rope: Rope) -> int:
    """Positions the model supports after its scaling (vLLM's rule): linear and dynamic stretch
    max_position_embeddings by `factor`, yarn stretches the original context by it; llama3 and
    longrope configs already state the extended length as max_position_embeddings."""
    if rope.kind in ("linear", "dynamic"):
        return int(rope.max_position_embeddings * rope.param("factor"))
    if rope.kind == "yarn":
        return int(rope.original_max_positions * _yarn_factor(rope))
    return rope.max_position_embeddings
