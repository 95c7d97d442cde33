import pytest

from engine.config import ALLOW_LONG_ENVS, EngineConfig
from engine.model_config import model_config_from_hf
from onenode.errors import ConfigError, ModelLoadError

SMOL = {"architectures": ["LlamaForCausalLM"], "hidden_size": 576, "num_hidden_layers": 30,
        "num_attention_heads": 9, "num_key_value_heads": 3, "intermediate_size": 1536,
        "vocab_size": 49152, "max_position_embeddings": 8192}


def test_tp_not_dividing_heads_suggests_pp():
    model = model_config_from_hf(SMOL)
    with pytest.raises(ConfigError) as err:
        EngineConfig(model="m", tensor_parallel_size=2).validate_against(model)
    assert "9 attention heads are not divisible by tensor_parallel_size=2" in str(err.value)
    assert "--pipeline-parallel-size 2" in str(err.value)


def test_tp3_and_pp3_are_valid_for_smollm2():
    model = model_config_from_hf(SMOL)
    assert EngineConfig(model="m", tensor_parallel_size=3).validate_against(model) == [30]
    assert EngineConfig(model="m", pipeline_parallel_size=3).validate_against(model) == [10, 10, 10]


def test_kv_heads_replicated_only_when_tp_is_a_multiple():
    cfg = dict(SMOL, num_attention_heads=12, num_key_value_heads=4)
    model = model_config_from_hf(cfg)
    EngineConfig(model="m", tensor_parallel_size=12).validate_against(model)  # 3 ranks share a head
    with pytest.raises(ConfigError, match="KV heads"):
        EngineConfig(model="m", tensor_parallel_size=6).validate_against(model)


def test_uni_with_world_above_one_names_the_fix():
    with pytest.raises(ConfigError, match="mp"):
        EngineConfig(model="m", tensor_parallel_size=2, distributed_executor_backend="uni")


@pytest.mark.parametrize("field,value", [("block_size", 3), ("gpu_memory_utilization", 1.5),
                                         ("distributed_executor_backend", "nccl"),
                                         ("dtype", "int3")])
def test_bad_values_are_one_line_config_errors(field, value):
    with pytest.raises(ConfigError) as err:
        EngineConfig(model="m", **{field: value})
    assert "\n" not in str(err.value)


def _rope_model(**kw):
    return model_config_from_hf({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
                                 "num_attention_heads": 4, "num_hidden_layers": 1,
                                 "intermediate_size": 8, "vocab_size": 8,
                                 "max_position_embeddings": 4096, **kw})


def test_max_model_len_defaults_to_the_scaled_positions():
    yarn = _rope_model(rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                     "original_max_position_embeddings": 4096})
    assert EngineConfig(model="x").resolved_max_model_len(yarn) == 16384
    assert EngineConfig(model="x", max_model_len=16384).resolved_max_model_len(yarn) == 16384


def test_max_model_len_past_the_positions_is_refused_naming_the_opt_in(monkeypatch):
    for name in ALLOW_LONG_ENVS:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="max_model_len=8192 exceeds the 4096 positions the "
                                          "model supports; use --max-model-len 4096 or less, "
                                          "or set ONENODE_ALLOW_LONG_MAX_MODEL_LEN=1 \\(or "
                                          "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1\\)"):
        EngineConfig(model="x", max_model_len=8192).resolved_max_model_len(_rope_model())
    linear = _rope_model(rope_scaling={"rope_type": "linear", "factor": 2.0})
    with pytest.raises(ConfigError, match="exceeds the 8192 positions the model supports with "
                                          "its linear rope scaling"):
        EngineConfig(model="x", max_model_len=9000).resolved_max_model_len(linear)


@pytest.mark.parametrize("env", ALLOW_LONG_ENVS)
def test_max_model_len_past_the_positions_with_the_opt_in(monkeypatch, env):
    monkeypatch.setenv(env, "1")
    assert EngineConfig(model="x", max_model_len=8192).resolved_max_model_len(
        _rope_model()) == 8192


def test_learned_positions_are_never_exceeded(monkeypatch):
    monkeypatch.setenv(ALLOW_LONG_ENVS[0], "1")
    gpt2 = model_config_from_hf({"architectures": ["GPT2LMHeadModel"], "n_embd": 64,
                                 "n_layer": 1, "n_head": 4, "vocab_size": 8, "n_positions": 1024})
    with pytest.raises(ConfigError, match="exceeds the model's 1024 learned positions"):
        EngineConfig(model="x", max_model_len=2048).resolved_max_model_len(gpt2)


def test_unsupported_architecture_names_the_supported_list():
    with pytest.raises(ModelLoadError, match="unsupported architecture.*Phi3ForCausalLM"):
        model_config_from_hf({"architectures": ["FalconForCausalLM"], "model_type": "falcon"})


def _moe(**kw) -> dict:
    return {"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128,
            "vocab_size": 512, "num_experts": 6, "num_experts_per_tok": 2,
            "moe_intermediate_size": 24, **kw}


def test_expert_parallel_needs_a_moe_model_and_divisible_experts():
    dense = model_config_from_hf(_moe(num_experts=0))
    with pytest.raises(ConfigError, match="is dense; drop --enable-expert-parallel"):
        EngineConfig(model="m", enable_expert_parallel=True).validate_against(dense)
    moe = model_config_from_hf(_moe())
    with pytest.raises(ConfigError, match="6 experts cannot be split evenly"):
        EngineConfig(model="m", tensor_parallel_size=4,
                     enable_expert_parallel=True).validate_against(moe)
    EngineConfig(model="m", tensor_parallel_size=2, enable_expert_parallel=True
                 ).validate_against(moe)


def test_sliced_experts_need_a_divisible_intermediate_size():
    moe = model_config_from_hf(_moe(moe_intermediate_size=30))
    with pytest.raises(ConfigError, match="or add --enable-expert-parallel"):
        EngineConfig(model="m", tensor_parallel_size=4).validate_against(moe)
