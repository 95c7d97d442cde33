import json

import numpy as np
import pytest

from engine.models.gguf_config import gguf_hf_config
from engine.planner.model_shape import load_model_shape
from onenode.errors import ModelLoadError


def write_tiny_gguf(path, tied=True):
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_context_length(256)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_token_list([f"t{i}" for i in range(100)])
    w.add_tensor("token_embd.weight", np.zeros((100, 64), dtype=np.float32))
    if not tied:
        w.add_tensor("output.weight", np.zeros((100, 64), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_config_json_dir_and_file(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                num_attention_heads=4, num_key_value_heads=2, vocab_size=300,
                max_position_embeddings=512).save_pretrained(tmp_path)
    for spec in (tmp_path, tmp_path / "config.json"):
        name, model, source = load_model_shape(str(spec))
        assert (model.num_layers, model.num_heads, model.num_kv_heads) == (3, 4, 2)
        assert name == str(spec) and source.startswith("local")


def test_gguf_metadata_only(tmp_path):
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    cfg = gguf_hf_config(path)
    assert cfg["num_hidden_layers"] == 2 and cfg["vocab_size"] == 100
    assert cfg["tie_word_embeddings"] is True
    assert gguf_hf_config(write_tiny_gguf(tmp_path / "untied.gguf", tied=False))[
        "tie_word_embeddings"] is False
    _, model, _ = load_model_shape(str(path))
    assert (model.hidden_size, model.num_heads, model.num_kv_heads) == (64, 4, 2)


def test_directory_with_one_gguf(tmp_path):
    write_tiny_gguf(tmp_path / "m.gguf")
    assert load_model_shape(str(tmp_path))[1].num_layers == 2
    write_tiny_gguf(tmp_path / "n.gguf")
    with pytest.raises(ModelLoadError, match="2 .gguf files"):
        load_model_shape(str(tmp_path))


def test_known_name():
    name, model, source = load_model_shape("Llama-2-70B")
    assert name == "meta-llama/Llama-2-70b-hf" and model.num_layers == 80
    assert source == "built-in shape of meta-llama/Llama-2-70b-hf"


def test_unknown_or_broken_inputs_name_the_fix(tmp_path):
    with pytest.raises(ModelLoadError, match="Llama-2-70b-hf"):
        load_model_shape("no-such-model-7b")
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ModelLoadError, match="cannot read"):
        load_model_shape(str(bad))
    bad.write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(ModelLoadError, match="onenode supports"):
        load_model_shape(str(bad))
    broken = tmp_path / "x.gguf"
    broken.write_bytes(b"nope")
    with pytest.raises(ModelLoadError, match="GGUF"):
        load_model_shape(str(broken))
