"""Every rope type against HF's own functions (transformers.modeling_rope_utils
.ROPE_INIT_FUNCTIONS): inverse frequencies and attention factor, for configs as HF saves them
(`rope_parameters`) and as older checkpoints hold them (`rope_scaling`), at lengths inside and
well past original_max_position_embeddings."""

import math

import pytest
import torch

from engine.layers.rope_scaling import attention_factor, inv_freq, max_positions
from engine.model_config import model_config_from_hf
from onenode.errors import ModelLoadError

LENGTHS = [None, 16, 32, 33, 100, 1000, 5000]


def _llama(**kw):
    from transformers import LlamaConfig

    kw.setdefault("rope_theta", 10000.0)
    return LlamaConfig(hidden_size=128, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=256, **kw)


def _phi3(**kw):
    from transformers import Phi3Config

    return Phi3Config(hidden_size=128, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=256, original_max_position_embeddings=32, **kw)


CASES = {
    "default": lambda: _llama(),
    "linear": lambda: _llama(rope_scaling={"rope_type": "linear", "factor": 4.0}),
    "dynamic": lambda: _llama(rope_scaling={"rope_type": "dynamic", "factor": 2.0}),
    "yarn": lambda: _llama(rope_scaling={"rope_type": "yarn", "factor": 8.0,
                                         "original_max_position_embeddings": 32}),
    "yarn-deepseek": lambda: _llama(rope_scaling={
        "rope_type": "yarn", "factor": 40.0, "original_max_position_embeddings": 32,
        "mscale": 1.0, "mscale_all_dim": 0.707, "beta_fast": 32, "beta_slow": 1}),
    "yarn-untruncated": lambda: _llama(rope_scaling={
        "rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64,
        "truncate": False, "beta_fast": 16, "beta_slow": 2}),
    "yarn-attention-factor": lambda: _llama(rope_scaling={
        "rope_type": "yarn", "factor": 4.0, "attention_factor": 0.9,
        "original_max_position_embeddings": 64}),
    "llama3": lambda: _llama(rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 32}),
    "longrope": lambda: _phi3(rope_scaling={
        "rope_type": "longrope", "short_factor": [1.0 + i / 10 for i in range(16)],
        "long_factor": [2.0 + i for i in range(16)]}),
    "longrope-partial": lambda: _phi3(partial_rotary_factor=0.5, rope_scaling={
        "rope_type": "longrope", "short_factor": [1.5] * 8, "long_factor": [3.0 + i for i in
                                                                            range(8)]}),
}


def _hf(config, seq_len):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    kind = config.rope_parameters["rope_type"]
    if kind == "default":
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

        return LlamaRotaryEmbedding.compute_default_rope_parameters(config)
    return ROPE_INIT_FUNCTIONS[kind](config, "cpu", seq_len=seq_len)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("saved_as", ["rope_parameters", "rope_scaling"])
def test_inv_freq_and_attention_factor_equal_hf(name, saved_as):
    config = CASES[name]()
    cfg = config.to_dict()
    if saved_as == "rope_scaling":  # the older spelling: theta and factor top-level
        params = dict(cfg.pop("rope_parameters"))
        cfg["rope_theta"] = params.pop("rope_theta")
        cfg["rope_scaling"] = params
    rope = model_config_from_hf(cfg).rope
    for seq_len in LENGTHS:
        ref_inv, ref_factor = _hf(config, seq_len)
        ours = torch.tensor(inv_freq(rope, seq_len), dtype=torch.float64)
        torch.testing.assert_close(ours, ref_inv.double(), rtol=2e-6, atol=0)
        assert attention_factor(rope) == pytest.approx(ref_factor, rel=1e-12)


def test_longrope_switches_factors_past_the_original_context():
    rope = model_config_from_hf(CASES["longrope"]().to_dict()).rope
    assert inv_freq(rope, 32) == inv_freq(rope, None) != inv_freq(rope, 33)
    assert attention_factor(rope) == pytest.approx(math.sqrt(1 + math.log(8) / math.log(32)))


def test_max_positions_follow_vllm():
    def limit(name):
        return max_positions(model_config_from_hf(CASES[name]().to_dict()).rope)

    assert limit("default") == 256 and limit("llama3") == 256 and limit("longrope") == 256
    assert limit("linear") == 1024 and limit("dynamic") == 512
    assert limit("yarn") == 32 * 8  # the original context times factor
    qwen25 = {"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64,
              "num_attention_heads": 4, "num_hidden_layers": 1, "intermediate_size": 8,
              "vocab_size": 8, "max_position_embeddings": 32768,
              "rope_scaling": {"type": "yarn", "factor": 4.0,
                               "original_max_position_embeddings": 32768}}
    assert model_config_from_hf(qwen25).max_supported_positions == 131072


def test_unknown_rope_type_is_refused_naming_the_supported():
    cfg = _llama().to_dict()
    cfg["rope_parameters"] = {"rope_type": "mrope", "rope_theta": 1e4}
    with pytest.raises(ModelLoadError, match="rope type 'mrope' is not supported; onenode "
                                             "supports default, linear, dynamic"):
        model_config_from_hf(cfg)


def test_rope_theta_is_read_from_rope_parameters():
    """transformers 5 writes rope_theta only inside rope_parameters."""
    cfg = _llama(rope_theta=500000.0).to_dict()
    assert "rope_theta" not in cfg and model_config_from_hf(cfg).rope_theta == 500000.0


def test_early_phi3_su_is_longrope_as_in_hf():
    cfg = CASES["longrope"]().to_dict()
    cfg["rope_scaling"] = {**cfg.pop("rope_parameters"), "type": "su"}
    del cfg["rope_scaling"]["rope_type"]
    assert model_config_from_hf(cfg).rope.kind == "longrope"
