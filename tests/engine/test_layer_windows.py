"""Each layer's sliding window, from HF configs built by transformers itself: the layers HF's
model files slide are the ones onenode slides, and architectures whose model files do not apply
a window yet are refused in one line."""

import pytest

from engine.model_config import model_config_from_hf
from onenode.errors import ModelLoadError

SMALL = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=4,
             num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=256)


def _hf(config_cls, arch: str, **kw) -> dict:
    cfg = config_cls(**{**SMALL, **kw}).to_dict()
    return {**cfg, "architectures": [arch]}


def _qwen2_hf_windows(cfg) -> list:
    """What HF's Qwen2Attention sets per layer (modeling_qwen2: sliding_window if the layer
    type is "sliding_attention")."""
    return [cfg.sliding_window if t == "sliding_attention" else None for t in cfg.layer_types]


@pytest.mark.parametrize("kw", [dict(use_sliding_window=True, sliding_window=32,
                                     max_window_layers=1),
                                dict(use_sliding_window=True, sliding_window=32,
                                     max_window_layers=3),
                                dict(use_sliding_window=False, sliding_window=32),
                                dict(use_sliding_window=True, sliding_window=32,
                                     layer_types=["sliding_attention", "full_attention"] * 2)])
def test_qwen2_slides_the_layers_hf_does(kw):
    from transformers import Qwen2Config

    cfg = Qwen2Config(**{**SMALL, **kw})
    ours = model_config_from_hf({**cfg.to_dict(), "architectures": ["Qwen2ForCausalLM"]})
    assert [ours.sliding_window(i) for i in range(4)] == _qwen2_hf_windows(cfg)


def test_mistral_slides_every_layer_and_llama_none():
    from transformers import LlamaConfig, MistralConfig

    mistral = model_config_from_hf(_hf(MistralConfig, "MistralForCausalLM", sliding_window=32))
    assert mistral.layer_windows == (32,) * 4
    assert model_config_from_hf(_hf(MistralConfig, "MistralForCausalLM",
                                    sliding_window=None)).layer_windows == ()
    llama = model_config_from_hf({**_hf(LlamaConfig, "LlamaForCausalLM"), "sliding_window": 8})
    assert llama.layer_windows == () and llama.sliding_window(0) is None


@pytest.mark.parametrize("config,arch,kw", [
    ("Phi3Config", "Phi3ForCausalLM", dict(sliding_window=64)),
    ("MixtralConfig", "MixtralForCausalLM", dict(sliding_window=64)),
    ("Qwen3Config", "Qwen3ForCausalLM", dict(use_sliding_window=True, sliding_window=64,
                                             max_window_layers=0))])
def test_a_window_on_a_family_that_does_not_apply_one_is_refused(config, arch, kw):
    import transformers

    cfg = _hf(getattr(transformers, config), arch, **kw)
    with pytest.raises(ModelLoadError) as err:
        model_config_from_hf(cfg)
    msg = str(err.value)
    assert "\n" not in msg and f"{arch} with sliding_window=64" in msg
    assert "MistralForCausalLM, Qwen2ForCausalLM" in msg
    # A window as long as the positions changes nothing: accepted (Phi-3.5's config).
    assert model_config_from_hf({**cfg, "sliding_window": 256}).family


def test_layer_types_of_the_wrong_length_are_refused():
    from transformers import Qwen2Config

    cfg = _hf(Qwen2Config, "Qwen2ForCausalLM", use_sliding_window=True, sliding_window=8)
    with pytest.raises(ModelLoadError, match="layer_types names 2 layers but the model has 4"):
        model_config_from_hf({**cfg, "layer_types": ["sliding_attention"] * 2})
