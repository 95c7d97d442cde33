"""FusedMoE on one rank: equal to HF's per-expert loop, its loader takes per-expert and stacked
checkpoint tensors, and it counts the (token, expert) pairs it computed."""

import pytest
import torch

from engine.layers import fused_moe
from engine.layers.fused_moe import FusedMoE, expert_load, reset_expert_load
from engine.layers.router import softmax_topk


def _hf_experts(e=8, h=64, i=32):
    from transformers import Qwen3MoeConfig
    from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeExperts

    cfg = Qwen3MoeConfig(hidden_size=h, num_experts=e, moe_intermediate_size=i)
    cfg._experts_implementation = "eager"
    hf = Qwen3MoeExperts(cfg)
    torch.manual_seed(0)
    hf.gate_up_proj.data.normal_(std=0.1)
    hf.down_proj.data.normal_(std=0.1)
    return hf


def _stacked_fetch(tensor):
    return lambda dim, start, end: tensor


def test_equals_hf_experts_from_stacked_weights():
    hf = _hf_experts()
    moe = FusedMoE(8, 64, 32)
    moe.weight_loader(moe.gate_up_proj, _stacked_fetch(hf.gate_up_proj.data))
    moe.weight_loader(moe.down_proj, _stacked_fetch(hf.down_proj.data))
    x = torch.randn(40, 64)
    w, ids = softmax_topk(torch.randn(40, 8), 2, True)
    assert torch.allclose(moe(x, w, ids), hf(x, ids, w), atol=1e-6)  # ~10 rows per expert
    assert expert_load(moe) == 80
    reset_expert_load(moe)
    assert expert_load(moe) == 0


def test_per_expert_tensors_fill_their_slots():
    hf = _hf_experts(e=4)
    moe = FusedMoE(4, 64, 32)
    for e in range(4):
        gate, up = hf.gate_up_proj.data[e].chunk(2)
        down = hf.down_proj.data[e]
        for part, t, param in (("gate", gate, moe.gate_up_proj), ("up", up, moe.gate_up_proj),
                               ("down", down, moe.down_proj)):
            moe.weight_loader(param, lambda dim, s, en, t=t: t if dim is None else
                              (t[s:en] if dim == 0 else t[:, s:en]), (e, part))
    assert torch.equal(moe.gate_up_proj.data, hf.gate_up_proj.data)
    assert torch.equal(moe.down_proj.data, hf.down_proj.data)


@pytest.mark.parametrize("grouped", [True, False], ids=["grouped_mm", "loop"])
@pytest.mark.parametrize("tokens", [1, 3, 16])
def test_few_rows_per_expert_equal_hf(tokens, grouped, monkeypatch):
    """Decode shapes, on both paths (torch's grouped_mm on CPU; the per-expert loop elsewhere,
    where 1-4 rows go through the skinny kernel and more straight into the output block); the
    skipped (empty) experts too."""
    if grouped and not hasattr(torch.nn.functional, "grouped_mm"):
        pytest.skip("this torch has no grouped_mm")
    monkeypatch.setattr(fused_moe, "_grouped_mm_takes", lambda xs: grouped)
    hf = _hf_experts()
    moe = FusedMoE(8, 64, 32)
    moe.weight_loader(moe.gate_up_proj, _stacked_fetch(hf.gate_up_proj.data))
    moe.weight_loader(moe.down_proj, _stacked_fetch(hf.down_proj.data))
    torch.manual_seed(tokens)
    x = torch.randn(tokens, 64)
    w, ids = softmax_topk(torch.randn(tokens, 8), 2, True)
    assert torch.allclose(moe(x, w, ids), hf(x, ids, w), atol=1e-6)
