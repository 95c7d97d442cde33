"""The routers are pure functions of the logits: equal to HF's Mixtral / Qwen-MoE / DeepSeek-V3
routers on random inputs, and a wrong correction bias changes DeepSeek's choice."""

import pytest
import torch

from engine.layers.router import TopKRouter, grouped_topk, softmax_topk


def _sorted(weights, ids):
    order = ids.argsort(dim=-1)
    return weights.gather(1, order), ids.gather(1, order)


@pytest.mark.parametrize("renormalize", [True, False])
def test_softmax_topk_equals_qwen3_moe_router(renormalize):
    from transformers import Qwen3MoeConfig
    from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeTopKRouter

    cfg = Qwen3MoeConfig(hidden_size=32, num_experts=8, num_experts_per_tok=2,
                         norm_topk_prob=renormalize)
    hf = Qwen3MoeTopKRouter(cfg)
    torch.manual_seed(0)
    hf.weight.data.normal_()
    x = torch.randn(50, 32)
    _, w_ref, ids_ref = hf(x)
    ours = TopKRouter(32, 8, 2, renormalize)
    ours.weight.data.copy_(hf.weight.data)
    w, ids = ours(x)
    assert torch.equal(ids, ids_ref) and torch.allclose(w, w_ref)


def test_softmax_topk_renormalized_sums_to_one():
    w, ids = softmax_topk(torch.randn(10, 6), 3, renormalize=True)
    assert torch.allclose(w.sum(-1), torch.ones(10)) and ids.shape == (10, 3)


def _hf_deepseek_router(n_experts=16, n_group=4, topk_group=2, top_k=4, scale=2.5):
    from transformers import DeepseekV3Config
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3TopkRouter

    cfg = DeepseekV3Config(hidden_size=32, n_routed_experts=n_experts, n_group=n_group,
                           topk_group=topk_group, num_experts_per_tok=top_k,
                           routed_scaling_factor=scale, norm_topk_prob=True)
    hf = DeepseekV3TopkRouter(cfg)
    torch.manual_seed(1)
    hf.weight.data.normal_()
    hf.e_score_correction_bias.data.normal_(std=0.5)
    return hf


def _ours_like(hf) -> TopKRouter:
    r = TopKRouter(32, hf.num_experts, hf.top_k, True, "sigmoid", hf.num_group, hf.topk_group,
                   hf.routed_scaling_factor)
    r.weight.data.copy_(hf.weight.data)
    r.e_score_correction_bias.data.copy_(hf.e_score_correction_bias)
    return r


def test_grouped_topk_equals_deepseek_v3_router():
    hf = _hf_deepseek_router()
    x = torch.randn(64, 32)
    _, w_ref, ids_ref = hf(x)
    w, ids = _ours_like(hf)(x)
    w, ids = _sorted(w, ids)
    w_ref, ids_ref = _sorted(w_ref, ids_ref)
    assert torch.equal(ids, ids_ref) and torch.allclose(w, w_ref)


def test_grouped_topk_keeps_experts_inside_the_chosen_groups():
    logits = torch.randn(20, 16)
    _, ids = grouped_topk(logits, 4, True, None, n_group=4, topk_group=1, scaling=1.0)
    assert all(len(set((row // 4).tolist())) == 1 for row in ids)


def test_wrong_correction_bias_changes_the_choice():
    hf = _hf_deepseek_router()
    x = torch.randn(64, 32)
    _, _, ids_ref = hf(x)
    ours = _ours_like(hf)
    ours.e_score_correction_bias.data.zero_()
    _, ids = ours(x)
    assert not torch.equal(_sorted(ids.float(), ids)[1], _sorted(ids_ref.float(), ids_ref)[1])
