"""Parameter counts: all experts resident (memory) and per token (speed), by hand on tiny MoE and
MLA shapes, and against the published totals of the real releases."""

import pytest

from engine.model_config import model_config_from_hf
from engine.model_params import layer_params, mlp_params, num_active_params, num_params
from engine.planner.known_models import KNOWN_MODELS

MIXTRAL = {"architectures": ["MixtralForCausalLM"], "hidden_size": 64, "intermediate_size": 32,
           "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "num_local_experts": 4, "num_experts_per_tok": 2, "vocab_size": 512}
# h=64, 4 heads of 16, 2 KV heads: attention 64*64 + 2*64*32 + 64*64 = 12288; norms 4*64 = 256;
# one expert 3*64*32 = 6144, router 64*4 = 256; embeddings 2*512*64 = 65536, final norm 64.
ATTN, NORMS, EXPERT, ROUTER, EMBED = 12288, 256, 6144, 256, 65536 + 64


def test_mixtral_counts_every_expert_and_the_router():
    m = model_config_from_hf(MIXTRAL)
    assert num_params(m) == m.num_params == 2 * (ATTN + ROUTER + 4 * EXPERT + NORMS) + EMBED
    assert num_active_params(m) == m.num_active_params == \
        2 * (ATTN + ROUTER + 2 * EXPERT + NORMS) + EMBED


def test_qwen3_moe_dense_layers_and_qk_norm():
    """mlp_only_layers and decoder_sparse_step leave dense MLPs (intermediate_size) in place."""
    cfg = {**MIXTRAL, "architectures": ["Qwen3MoeForCausalLM"], "num_experts": 4,
           "moe_intermediate_size": 16, "intermediate_size": 48, "num_hidden_layers": 4,
           "decoder_sparse_step": 2, "mlp_only_layers": [3]}
    m = model_config_from_hf(cfg)
    assert [m.is_moe_layer(i) for i in range(4)] == [False, True, False, False]
    dense, expert = 3 * 64 * 48, 3 * 64 * 16
    attn = ATTN + 2 * 16  # q_norm and k_norm over one 16-wide head each
    assert num_params(m) == 4 * (attn + NORMS) + 3 * dense + ROUTER + 4 * expert + EMBED
    assert num_active_params(m) == 4 * (attn + NORMS) + 3 * dense + ROUTER + 2 * expert + EMBED


def test_qwen2_moe_shared_expert_and_its_gate():
    cfg = {**MIXTRAL, "architectures": ["Qwen2MoeForCausalLM"], "num_experts": 4,
           "moe_intermediate_size": 16, "shared_expert_intermediate_size": 40}
    m = model_config_from_hf(cfg)
    shared = 3 * 64 * 40 + 64
    assert mlp_params(m, 0) == ROUTER + 4 * 3 * 64 * 16 + shared
    assert mlp_params(m, 0, active=True) == ROUTER + 2 * 3 * 64 * 16 + shared


def test_deepseek_mla_and_shared_experts_by_hand():
    cfg = {"architectures": ["DeepseekV3ForCausalLM"], "hidden_size": 64,
           "intermediate_size": 96, "moe_intermediate_size": 16, "num_hidden_layers": 3,
           "num_attention_heads": 4, "n_routed_experts": 8, "n_shared_experts": 1,
           "num_experts_per_tok": 2, "first_k_dense_replace": 1, "q_lora_rank": 24,
           "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8,
           "v_head_dim": 16, "vocab_size": 512}
    m = model_config_from_hf(cfg)
    q = 64 * 24 + 24 + 24 * 4 * 24  # q_a_proj, q_a_layernorm, q_b_proj (4 heads of 16+8)
    kv = 64 * (32 + 8) + 32 + 32 * 4 * (16 + 16)  # kv_a_proj_with_mqa, its norm, kv_b_proj
    attn = q + kv + 4 * 16 * 64  # o_proj
    expert, router = 3 * 64 * 16, 64 * 8 + 8  # sigmoid routing adds e_score_correction_bias
    moe = router + 8 * expert + expert
    assert layer_params(m, 0) == attn + 3 * 64 * 96 + NORMS
    assert layer_params(m, 1) == attn + moe + NORMS
    assert num_params(m) == 3 * (attn + NORMS) + 3 * 64 * 96 + 2 * moe + EMBED
    assert num_active_params(m) == num_params(m) - 2 * 6 * expert
    # TP=2 slices q_b, kv_b, o and the experts; q_a and kv_a stay whole on every rank.
    attn_tp2 = 64 * 24 + 24 + 24 * 2 * 24 + 64 * 40 + 32 + 32 * 2 * 32 + 2 * 16 * 64
    assert layer_params(m, 1, tp=2) == attn_tp2 + router + 9 * expert // 2 + NORMS
    # EP=4: two whole experts per rank, the shared one still sliced by TP.
    assert mlp_params(m, 1, tp=4, ep=4) == router + 2 * expert + expert // 4


def test_dense_models_have_all_their_parameters_active():
    m = model_config_from_hf(KNOWN_MODELS["meta-llama/Llama-2-70b-hf"])
    assert m.num_active_params == m.num_params


# Published totals / activated parameters (the model cards; DeepSeek-V3's 671B excludes the
# 14B multi-token-prediction module, which inference does not load).
@pytest.mark.parametrize("hub_id, total, active", [
    ("deepseek-ai/DeepSeek-V3", 671, 37), ("Qwen/Qwen3-235B-A22B", 235, 22),
    ("Qwen/Qwen3-30B-A3B", 30.5, 3.3), ("mistralai/Mixtral-8x22B-v0.1", 141, 39),
])
def test_published_moe_totals_and_active(hub_id, total, active):
    m = model_config_from_hf(KNOWN_MODELS[hub_id])
    assert m.num_params / 1e9 == pytest.approx(total, rel=0.02)
    assert m.num_active_params / 1e9 == pytest.approx(active, rel=0.03)
