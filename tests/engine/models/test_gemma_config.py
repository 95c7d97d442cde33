"""Gemma 2/3 config.json -> ModelConfig (engine/models/gemma_config.py): HF's defaults for absent
keys, both rope spellings, the layer pattern and windows, image-text checkpoints' text_config,
and one-line refusals."""

import pytest

from engine.model_config import model_config_from_hf
from engine.planner.known_models import KNOWN_MODELS
from onenode.errors import ModelLoadError

SLIDE, FULL = "sliding_attention", "full_attention"
# The keys Gemma 3's releases write (google/gemma-3-1b-it's shape, layers cut to 7).
RELEASED_G3 = {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
               "hidden_size": 1152, "intermediate_size": 6912, "num_hidden_layers": 7,
               "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 256,
               "vocab_size": 262144, "max_position_embeddings": 32768, "rope_theta": 1000000.0,
               "rope_local_base_freq": 10000.0, "rope_scaling": None, "sliding_window": 512,
               "sliding_window_pattern": 6, "query_pre_attn_scalar": 256,
               "final_logit_softcapping": None, "attn_logit_softcapping": None}


def test_gemma3_27b_known_shape_loads():
    m = model_config_from_hf(KNOWN_MODELS["google/gemma-3-27b-it"])
    assert (m.family, m.query_pre_attn_scalar, m.rope_local_theta) == ("gemma3", 168.0, 1e4)
    assert m.layer_types[:6] == (SLIDE,) * 5 + (FULL,) and len(m.layer_types) == 62
    assert m.layer_windows[:6] == (1024,) * 5 + (None,)
    assert m.rope_scaling == {"rope_type": "linear", "factor": 8.0}
    # 131072 already counts the 8x linear scaling (vLLM reads Gemma 3 the same way).
    assert m.max_supported_positions == 131072
    assert m.attn_logit_softcapping is None and m.qk_norm


def test_released_and_transformers5_spellings_agree():
    from transformers import Gemma3TextConfig

    released = {**RELEASED_G3, "rope_scaling": {"rope_type": "linear", "factor": 8.0}}
    keys = {k: v for k, v in released.items() if k not in ("architectures", "model_type")}
    v5 = {**Gemma3TextConfig(**keys).to_dict(), "architectures": ["Gemma3ForCausalLM"]}
    assert "full_attention" in v5["rope_parameters"] and "rope_local_base_freq" not in v5
    assert model_config_from_hf(v5) == model_config_from_hf(released)


def test_absent_keys_take_hf_defaults():
    g2 = model_config_from_hf({"architectures": ["Gemma2ForCausalLM"], "num_hidden_layers": 4})
    assert (g2.attn_logit_softcapping, g2.final_logit_softcapping) == (50.0, 30.0)
    assert (g2.head_dim, g2.vocab_size, g2.hidden_act) == (256, 256000, "gelu_pytorch_tanh")
    assert g2.layer_types == (SLIDE, FULL, SLIDE, FULL) and g2.tie_word_embeddings
    assert g2.layer_windows == (4096, None, 4096, None) and g2.rope_local_theta is None
    capless = model_config_from_hf({"architectures": ["Gemma2ForCausalLM"],
                                    "final_logit_softcapping": None})
    assert capless.final_logit_softcapping is None  # null is not absent
    g3 = model_config_from_hf({"model_type": "gemma3_text", "num_hidden_layers": 12})
    assert (g3.rope_theta, g3.rope_local_theta, g3.head_dim) == (1e6, 1e4, 256)
    assert g3.layer_types.count(FULL) == 2 and g3.layer_types[5] == FULL


def test_gemma3_ignores_an_attention_cap_as_hf_does():
    m = model_config_from_hf({**RELEASED_G3, "attn_logit_softcapping": 50.0})
    assert m.attn_logit_softcapping is None


def test_image_text_checkpoint_reads_its_text_config():
    cfg = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
           "eos_token_id": [1, 106], "torch_dtype": "bfloat16",
           "text_config": {"model_type": "gemma3_text", "hidden_size": 2560,
                           "intermediate_size": 10240, "num_hidden_layers": 34,
                           "num_attention_heads": 8, "num_key_value_heads": 4,
                           "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
                           "sliding_window": 1024},
           "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152}}
    m = model_config_from_hf(cfg)
    assert (m.family, m.hidden_size, m.vocab_size, m.eos_token_ids) == \
        ("gemma3", 2560, 262208, (1, 106))
    assert m.torch_dtype == "bfloat16" and m.layer_windows[0] == 1024


@pytest.mark.parametrize("extra, words", [
    ({"use_bidirectional_attention": True}, "EmbeddingGemma"),
    ({"layer_types": [SLIDE] * 3}, "per layer"),
    ({"rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6},
                          "sliding_attention": {"rope_type": "linear", "factor": 2.0,
                                                "rope_theta": 1e4}}}, "sliding layers"),
])
def test_refused_in_one_line(extra, words):
    with pytest.raises(ModelLoadError, match=words) as err:
        model_config_from_hf({**RELEASED_G3, **extra})
    assert "\n" not in str(err.value)
