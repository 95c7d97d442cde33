"""A GGUF file's metadata (llama.cpp names) as the HF config.json fields the engine reads.

One reader for the engine (model_source.py) and the planner: it reads the header through the
public `gguf` library, never the tensors, so a 70B file answers in milliseconds.
"""

from pathlib import Path

from onenode.errors import ModelLoadError

GGUF_ARCHS = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
              "mistral": "MistralForCausalLM", "gpt2": "GPT2LMHeadModel"}
# llama.cpp's names of MoE architectures (Mixtral is "llama" with an expert_count).
GGUF_MOE_ARCHS = ("qwen2moe", "qwen3moe", "deepseek2", "deepseek", "mixtral", "dbrx", "olmoe",
                  "llama4", "gpt-oss", "glm4moe")


def gguf_hf_config(path: Path) -> dict:
    """Translate GGUF metadata (llama.cpp names) into the HF config.json fields we parse."""
    reader, meta, arch = _read_supported(path)

    def get(key, default=None):
        return meta.get(f"{arch}.{key}", default)

    vocab = get("vocab_size") or len(reader.fields["tokenizer.ggml.tokens"].data)
    tied = not any(t.name == "output.weight" for t in reader.tensors)
    if arch == "gpt2":
        return {"architectures": [GGUF_ARCHS[arch]], "model_type": arch, "n_embd": get("embedding_length"),
                "n_layer": get("block_count"), "n_head": get("attention.head_count"),
                "n_inner": get("feed_forward_length"), "vocab_size": vocab,
                "n_positions": get("context_length", 1024), "torch_dtype": "float32"}
    return _decoder_fields(arch, meta, get, vocab, tied)


def _read_supported(path: Path):
    """The reader, its metadata (tokenizer arrays left out) and the architecture, or one line
    saying why onenode does not read this file."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a readable GGUF"
        raise ModelLoadError(f"cannot read GGUF metadata of {path} ({exc}); check the file "
                             f"is a complete .gguf download") from None
    meta = {k: f.contents() for k, f in reader.fields.items()
            if not k.startswith("tokenizer.ggml.") or k.endswith("_token_id")}
    arch = meta.get("general.architecture", "")
    experts = meta.get(f"{arch}.expert_count") or 0
    if experts or arch in GGUF_MOE_ARCHS or any("_exps" in t.name for t in reader.tensors):
        raise ModelLoadError(
            f"GGUF architecture {arch!r} is a mixture of experts ({experts or 'stacked'} experts "
            f"per layer as llama.cpp's blk.N.ffn_*_exps tensors), which onenode does not read "
            f"from GGUF; use the model's HF safetensors release (config.json + *.safetensors)")
    if arch not in GGUF_ARCHS:
        raise ModelLoadError(f"GGUF architecture {arch!r} is not supported; onenode reads "
                             f"{', '.join(sorted(GGUF_ARCHS))}")
    return reader, meta, arch


def _decoder_fields(arch: str, meta: dict, get, vocab: int, tied: bool) -> dict:
    return {"architectures": [GGUF_ARCHS[arch]], "model_type": arch,
            "hidden_size": get("embedding_length"),
            "num_hidden_layers": get("block_count"),
            "num_attention_heads": get("attention.head_count"),
            "num_key_value_heads": get("attention.head_count_kv"),
            "intermediate_size": get("feed_forward_length"), "vocab_size": vocab,
            "max_position_embeddings": get("context_length", 2048),
            "rms_norm_eps": get("attention.layer_norm_rms_epsilon", 1e-6),
            "rope_theta": get("rope.freq_base", 10000.0), "tie_word_embeddings": tied,
            # Applied where the architecture has a window (engine/layer_windows.py). llama.cpp
            # converts Mistral to "llama" without one: such a file attends to everything.
            "sliding_window": get("attention.sliding_window"),
            # GGUF weights are dequantized to fp32 on load (as transformers does).
            "torch_dtype": "float32",
            "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"),
            "eos_token_id": meta.get("tokenizer.ggml.eos_token_id")}
