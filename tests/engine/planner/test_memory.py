import pytest

from engine.core.kv_blocks import GiB
from engine.model_config import model_config_from_hf
from engine.planner import memory

TINY = {"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": 256, "max_position_embeddings": 512}


def tiny(**kw):
    return model_config_from_hf({**TINY, **kw})


# Hand-computed for TINY (h=64, i=128, 4 heads of 16, 2 KV heads):
#   tp=1: q 64*64 + k,v 2*64*32 + o 64*64 = 12288, mlp 3*64*128 = 24576, norms 4*64 = 256
#   tp=2: 2048 + 2*64*16 + 2048 = 6144, 12288, 256
#   tp=4: 1024 + 2*64*16 (one KV head replicated) + 1024 = 4096, 6144, 256
@pytest.mark.parametrize("tp, params", [(1, 37120), (2, 18688), (4, 10496)])
def test_layer_params_per_rank(tp, params):
    assert memory.layer_params_per_rank(tiny(), tp) == params


def test_weights_single_gpu_equal_the_model_parameter_count():
    for cfg in (TINY, {**TINY, "tie_word_embeddings": True},
                {"architectures": ["GPT2LMHeadModel"], "n_embd": 64, "n_layer": 2, "n_head": 4,
                 "vocab_size": 300, "n_positions": 128},
                {"architectures": ["OPTForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
                 "num_attention_heads": 4, "ffn_dim": 256, "vocab_size": 300,
                 "max_position_embeddings": 128}):
        model = model_config_from_hf(cfg)
        assert memory.weights_bytes_per_gpu(model, 1) == model.num_params


def test_weights_busiest_stage():
    # pp=2, layers [2, 2]: stage 0 = 2*37120 + embedding 256*64/1 = 90624;
    # stage 1 = 2*37120 + final norm 64 + LM head 16384 = 90688 -> the busiest, x 2 bytes.
    assert memory.weights_bytes_per_gpu(tiny(), 2, tp=1, pp=2) == 90688 * 2
    # Tied embeddings: one copy when one stage holds both ends, two copies across stages.
    tied = tiny(tie_word_embeddings=True)
    assert memory.weights_bytes_per_gpu(tied, 2) == (4 * 37120 + 16384 + 64) * 2
    assert memory.weights_bytes_per_gpu(tied, 2, pp=2) == 90688 * 2
    # tp=2: embedding and LM head are vocab-parallel halves.
    assert memory.weights_bytes_per_gpu(tiny(), 4, tp=2) == (4 * 18688 + 8192 + 64 + 8192) * 4


def test_activation_formula():
    # 100 tokens x 2 bytes x (4*64 + 3*128) + min(100, 8) rows x 256 vocab x 4 bytes
    assert memory.activation_bytes(tiny(), 100, 2, tp=1, max_num_seqs=8) == 128000 + 8192
    # tp=2 halves the MLP and logits shards: 100*2*(256 + 192) + 8*128*4
    assert memory.activation_bytes(tiny(), 100, 2, tp=2, max_num_seqs=8) == 89600 + 4096


def test_non_torch_reserve_adds_nccl_buffers_only_with_peers():
    assert memory.non_torch_bytes(1) == int(0.5 * GiB)
    assert memory.non_torch_bytes(8) == int(0.75 * GiB)


@pytest.mark.parametrize("max_len, tokens", [(512, 2048), (4096, 4096), (131072, 8192)])
def test_default_batched_tokens_follow_the_engine(max_len, tokens):
    assert memory.default_max_num_batched_tokens(max_len) == tokens


@pytest.mark.parametrize("requested, ckpt, device, dtype", [
    ("auto", "float32", "cuda", "bfloat16"), ("auto", "float32", "cpu", "float32"),
    ("auto", "float16", "cuda", "float16"), ("fp32", "bfloat16", "cuda", "fp32"),
])
def test_planned_dtype_mirrors_the_engine(requested, ckpt, device, dtype):
    assert memory.planned_dtype(requested, ckpt, device) == dtype
