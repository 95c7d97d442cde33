"""GGUF metadata: MoE files (llama.cpp's stacked blk.N.ffn_*_exps experts) are refused in one
line that names the architecture and points at the safetensors release."""

import numpy as np
import pytest

from engine.models.gguf_config import gguf_hf_config
from onenode.errors import ModelLoadError


def write_gguf(path, arch: str, experts: int = 0, window: int = 0):
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(1)
    w.add_context_length(64)
    w.add_embedding_length(16)
    w.add_feed_forward_length(32)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_token_list([f"t{i}" for i in range(20)])
    if window:
        w.add_sliding_window(window)
    w.add_tensor("token_embd.weight", np.zeros((20, 16), dtype=np.float32))
    if experts:
        w.add_expert_count(experts)
        w.add_expert_used_count(2)
        w.add_tensor("blk.0.ffn_gate_exps.weight", np.zeros((experts, 32, 16), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.mark.parametrize("arch, experts, named", [("llama", 4, "'llama'"),
                                                   ("qwen3moe", 8, "'qwen3moe'")])
def test_moe_gguf_is_refused_naming_the_architecture(tmp_path, arch, experts, named):
    path = write_gguf(tmp_path / "m.gguf", arch, experts)
    with pytest.raises(ModelLoadError) as err:
        gguf_hf_config(path)
    msg = str(err.value)
    assert "\n" not in msg and named in msg and f"{experts} experts" in msg
    assert "HF safetensors release" in msg


def test_dense_gguf_still_reads(tmp_path):
    cfg = gguf_hf_config(write_gguf(tmp_path / "d.gguf", "llama"))
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["hidden_size"] == 16


def test_a_mistral_gguf_window_is_applied_and_a_llama_one_has_none(tmp_path):
    """llama.cpp stores Mistral as "llama" without a window: it attends to everything, as
    llama.cpp and HF's Llama do; a "mistral" file that carries a window gets it."""
    from engine.model_config import model_config_from_hf

    mistral = gguf_hf_config(write_gguf(tmp_path / "m.gguf", "mistral", window=8))
    assert model_config_from_hf(mistral).layer_windows == (8,)
    llama = gguf_hf_config(write_gguf(tmp_path / "l.gguf", "llama"))
    assert llama["sliding_window"] is None and model_config_from_hf(llama).layer_windows == ()
