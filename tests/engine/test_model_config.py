"""ModelConfig reads the checkpoint's dtype under either key transformers has written."""

import pytest

from engine.model_config import model_config_from_hf

LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
         "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 256}


@pytest.mark.parametrize("key", ["dtype", "torch_dtype"])
def test_saved_dtype_is_read_from_either_key(key):
    assert model_config_from_hf({**LLAMA, key: "bfloat16"}).torch_dtype == "bfloat16"


def test_no_saved_dtype_means_float32():
    assert model_config_from_hf(LLAMA).torch_dtype == "float32"
