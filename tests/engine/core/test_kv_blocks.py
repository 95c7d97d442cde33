import pytest

from engine.core import kv_blocks
from engine.core.kv_blocks import GiB
from engine.model_config import model_config_from_hf
from onenode.errors import ResourceError

LLAMA = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
         "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 2,
         "vocab_size": 256, "max_position_embeddings": 512}
MODEL = model_config_from_hf(LLAMA)  # head_dim 16


@pytest.mark.parametrize("kv, tp, per_rank", [(8, 1, 8), (8, 2, 4), (8, 8, 1), (8, 16, 1),
                                              (2, 4, 1)])
def test_kv_heads_per_rank_splits_or_replicates(kv, tp, per_rank):
    assert kv_blocks.kv_heads_per_rank(kv, tp) == per_rank


def test_bytes_per_block_by_hand():
    # K and V x 2 KV heads x 16 dims x 4 bytes x 16 tokens x 6 layers
    assert kv_blocks.bytes_per_block(MODEL, 16, 4) == 2 * 2 * 16 * 4 * 16 * 6 == 24576
    assert kv_blocks.bytes_per_block(MODEL, 16, 4, tp=2) == 24576 // 2
    assert kv_blocks.bytes_per_block(MODEL, 16, 4, tp=4) == 24576 // 2  # 1 head replicated
    # The busiest stage sets the size: 6 layers / 4 stages -> [1, 2, 2, 1]
    assert kv_blocks.bytes_per_block(MODEL, 16, 4, pp=4) == 2 * 2 * 16 * 4 * 16 * 2
    assert kv_blocks.bytes_per_block(MODEL, 8, 2, pp=2, pp_partition=[5, 1]) == \
        2 * 2 * 16 * 2 * 8 * 5


def test_mla_caches_the_latent_whole_on_every_tp_rank():
    """DeepSeek's MLA: kv_lora_rank + qk_rope_head_dim per token per layer, not K and V of 128
    heads; vLLM keeps the latent whole on each TP rank, so TP does not shrink it."""
    mla = model_config_from_hf({
        "architectures": ["DeepseekV3ForCausalLM"], "hidden_size": 7168,
        "intermediate_size": 18432, "num_hidden_layers": 61, "num_attention_heads": 128,
        "kv_lora_rank": 512, "qk_rope_head_dim": 64, "qk_nope_head_dim": 128,
        "v_head_dim": 128, "q_lora_rank": 1536, "vocab_size": 129280})
    for tp in (1, 8, 32):
        assert kv_blocks.kv_bytes_per_token_layer(mla, tp, 2) == (512 + 64) * 2
    assert kv_blocks.bytes_per_block(mla, 16, 2, tp=8, pp=4) == 576 * 2 * 16 * 16
    assert kv_blocks.kv_bytes_per_token_layer(MODEL, 2, 4) == 2 * 1 * 16 * 4


def test_num_blocks_floors_and_never_goes_negative():
    assert kv_blocks.num_kv_blocks(10_000, 3000) == 3
    assert kv_blocks.num_kv_blocks(-5.0, 3000) == 0


def test_gpu_budget_is_vllms_formula():
    assert kv_blocks.gpu_available_bytes(80 * GiB, 0.9, 14 * GiB, 1 * GiB, 0.5 * GiB) == \
        pytest.approx(72 * GiB - 15.5 * GiB)


def test_cpu_budget_defaults_to_4_gib():
    assert kv_blocks.cpu_available_bytes(None) == 4 * GiB
    assert kv_blocks.cpu_available_bytes(0.5) == GiB // 2


def test_check_blocks_passes_when_one_request_fits():
    kv_blocks.check_blocks(32, 100, 3200, "cuda", 16, 512)  # 512 / 16 = 32 blocks needed


@pytest.mark.parametrize("device, knob", [("cuda", "--gpu-memory-utilization"),
                                          ("cpu", "--kv-cache-space-gib")])
def test_check_blocks_names_the_knob(device, knob):
    with pytest.raises(ResourceError) as err:
        kv_blocks.check_blocks(10, GiB // 8, 10 * GiB / 8, device, 16, 512)
    message = str(err.value)
    assert "10 blocks but one 512-token request needs 32" in message
    assert "2.75 GiB missing" in message and knob in message and "\n" not in message


def test_max_concurrency():
    assert kv_blocks.max_concurrency(1000, 16, 4000) == 4.0


def test_sliding_window_layers_count_the_whole_context():
    """Blocks behind every window are not freed, so a windowed model's block holds every
    layer's keys, as a full-attention model's does (and a request needs max_model_len of them,
    check_blocks)."""
    mistral = model_config_from_hf({**LLAMA, "architectures": ["MistralForCausalLM"],
                                    "sliding_window": 32})
    assert mistral.layer_windows == (32,) * 6
    assert kv_blocks.bytes_per_block(mistral, 16, 4) == kv_blocks.bytes_per_block(MODEL, 16, 4)
