"""YaRN as DeepSeek uses it (the shared rope module: rope_scaling.py, rotary.py), against HF's
DeepSeek-V3 rope init and softmax mscale, at positions past original_max_position_embeddings."""

import pytest
import torch

from engine.layers.rope_scaling import Rope, attention_factor, inv_freq, normalize_scaling, \
    softmax_mscale
from engine.layers.rotary import RotaryEmbedding
from tests.engine.tiny_models import DEEPSEEK_YARN

# DeepSeek-V3's published rope_scaling (mscale == mscale_all_dim: cos/sin unscaled) and the
# tiny oracle's (mscale != mscale_all_dim: both factors differ from 1).
V3 = {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "beta_fast": 32,
      "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0,
      "original_max_position_embeddings": 4096}
CASES = [(V3, 64, 163840), (DEEPSEEK_YARN, 8, 128),
         ({**DEEPSEEK_YARN, "mscale": 0.707, "mscale_all_dim": 0.0}, 8, 128)]


def _hf(scaling: dict, rope_dim: int, max_positions: int):
    from transformers import DeepseekV3Config
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import (
        DeepseekV3RotaryEmbedding, yarn_apply_mscale)

    cfg = DeepseekV3Config(qk_rope_head_dim=rope_dim, max_position_embeddings=max_positions,
                           rope_parameters=dict(scaling))
    return DeepseekV3RotaryEmbedding(cfg), yarn_apply_mscale(cfg.rope_parameters, 1.0)


def _rope(scaling: dict | None, dim: int, max_positions: int) -> Rope:
    theta = (scaling or {}).get("rope_theta", 10000.0)
    return Rope(dim, theta, max_positions,
                normalize_scaling(scaling, {"max_position_embeddings": max_positions}))


@pytest.mark.parametrize("scaling, dim, max_pos", CASES)
def test_inv_freq_and_attention_factor_equal_hf(scaling, dim, max_pos):
    hf, _ = _hf(scaling, dim, max_pos)
    rope = _rope(scaling, dim, max_pos)
    inv = torch.tensor(inv_freq(rope), dtype=torch.float32)
    torch.testing.assert_close(inv, hf.inv_freq, rtol=1e-6, atol=0)
    assert attention_factor(rope) == pytest.approx(hf.attention_scaling, rel=1e-12)


@pytest.mark.parametrize("scaling, dim, max_pos", CASES)
def test_cos_sin_past_the_original_length_equal_hf(scaling, dim, max_pos):
    hf, _ = _hf(scaling, dim, max_pos)
    original = scaling["original_max_position_embeddings"]
    positions = torch.tensor([0, 1, original - 1, original, original + 7, max_pos - 1])
    cos, sin = hf(torch.zeros(1, dtype=torch.float32), positions[None])
    ours = RotaryEmbedding(dim, max_pos, scaling["rope_theta"],
                           normalize_scaling(scaling, {"max_position_embeddings": max_pos}))
    x = torch.randn(len(positions), 1, dim)
    half = dim // 2
    ref = x * cos[0, :, None] + torch.cat((-x[..., half:], x[..., :half]), -1) * sin[0, :, None]
    # An fp32 angle at position p is off by up to ~p x 2^-24 however it is computed.
    torch.testing.assert_close(ours(positions, x), ref, rtol=1e-6, atol=1e-6 + max_pos * 1e-7)


@pytest.mark.parametrize("scaling, dim, max_pos", CASES)
def test_softmax_mscale_equals_hf(scaling, dim, max_pos):
    _, hf_scale = _hf(scaling, dim, max_pos)
    assert softmax_mscale(_rope(scaling, dim, max_pos)) == pytest.approx(hf_scale, rel=1e-12)


def test_no_scaling_is_plain_rope():
    assert softmax_mscale(_rope(None, 8, 128)) == 1.0
    rope = RotaryEmbedding(8, 128, 10000.0, None)
    x = torch.randn(3, 2, 8)
    pos = torch.tensor([0, 5, 100])
    inv = 1.0 / (10000.0 ** (torch.arange(0, 8, 2, dtype=torch.float64) / 8))
    ang = (pos[:, None].double() * inv).float()
    cos, sin = ang.cos().repeat(1, 2)[:, None], ang.sin().repeat(1, 2)[:, None]
    ref = x * cos + torch.cat((-x[..., 4:], x[..., :4]), -1) * sin
    torch.testing.assert_close(rope(pos, x), ref)
