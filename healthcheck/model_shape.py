"""Find a model's shape for `onenode plan` without loading weights.

Accepted: a well-known name or hub id (engine/planning/known_models.py), a local config.json or a
directory holding one, or a GGUF file (or a directory holding exactly one) whose metadata is read.
This is the I/O edge of the planner: everything after it is pure.
"""

import json
from pathlib import Path

from engine.errors import ModelLoadError
from engine.model_config import ModelConfig, model_config_from_hf
from engine.planning.known_models import known_model, known_model_names

GGUF_ARCHS = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM",
              "mistral": "MistralForCausalLM", "gpt2": "GPT2LMHeadModel"}


def load_model_shape(spec: str) -> tuple[str, ModelConfig, str]:
    """(name for `onenode serve`, ModelConfig, where the shape came from)."""
    path = Path(spec).expanduser()
    if path.exists():
        return str(path), _from_path(path), f"local {path}"
    known = known_model(spec)
    if known:
        hub_id, cfg = known
        return hub_id, model_config_from_hf(cfg), f"built-in shape of {hub_id}"
    raise ModelLoadError(
        f"{spec!r} is neither a local config.json/GGUF/model directory nor a known model; "
        f"give a path or one of: {', '.join(known_model_names())}")


def _from_path(path: Path) -> ModelConfig:
    if path.is_dir():
        if (path / "config.json").exists():
            return _from_config_json(path / "config.json")
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return gguf_model_config(ggufs[0])
        raise ModelLoadError(f"{path} has no config.json and {len(ggufs)} .gguf files; point "
                             f"at the config.json or at one .gguf file")
    if path.suffix == ".gguf":
        return gguf_model_config(path)
    return _from_config_json(path)


def _from_config_json(path: Path) -> ModelConfig:
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path} as a HF config.json ({exc}); give a valid "
                             f"config.json, a GGUF file or a known model name") from None
    return model_config_from_hf(cfg)


def gguf_model_config(path: Path) -> ModelConfig:
    """The engine's own resolver when it exists (engine/model_source.py), else the GGUF metadata
    read here: only the header, never the tensors."""
    try:
        from engine.model_source import resolve_model
    except ImportError:
        return model_config_from_hf(gguf_hf_config(path))
    return resolve_model(str(path)).model_config


def gguf_hf_config(path: Path) -> dict:
    """Translate GGUF metadata (llama.cpp names) into the HF config.json fields we parse."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # noqa: BLE001 - any parse failure means "not a readable GGUF"
        raise ModelLoadError(f"cannot read GGUF metadata of {path} ({exc}); check the file "
                             f"is a complete .gguf download") from None
    meta = {k: f.contents() for k, f in reader.fields.items()
            if not k.startswith("tokenizer.ggml.") or k.endswith("_token_id")}
    arch = meta.get("general.architecture", "")
    if arch not in GGUF_ARCHS:
        raise ModelLoadError(f"GGUF architecture {arch!r} is not supported; onenode reads "
                             f"{', '.join(sorted(GGUF_ARCHS))}")

    def get(key, default=None):
        return meta.get(f"{arch}.{key}", default)

    vocab = get("vocab_size") or len(reader.fields["tokenizer.ggml.tokens"].data)
    tied = not any(t.name == "output.weight" for t in reader.tensors)
    if arch == "gpt2":
        return {"architectures": [GGUF_ARCHS[arch]], "n_embd": get("embedding_length"),
                "n_layer": get("block_count"), "n_head": get("attention.head_count"),
                "n_inner": get("feed_forward_length"), "vocab_size": vocab,
                "n_positions": get("context_length", 1024), "torch_dtype": "float32"}
    return {"architectures": [GGUF_ARCHS[arch]], "hidden_size": get("embedding_length"),
            "num_hidden_layers": get("block_count"),
            "num_attention_heads": get("attention.head_count"),
            "num_key_value_heads": get("attention.head_count_kv"),
            "intermediate_size": get("feed_forward_length"), "vocab_size": vocab,
            "max_position_embeddings": get("context_length", 2048),
            "rms_norm_eps": get("attention.layer_norm_rms_epsilon", 1e-6),
            "rope_theta": get("rope.freq_base", 10000.0), "tie_word_embeddings": tied,
            # GGUF weights are dequantized to fp32 on load (as transformers does).
            "torch_dtype": "float32",
            "bos_token_id": meta.get("tokenizer.ggml.bos_token_id"),
            "eos_token_id": meta.get("tokenizer.ggml.eos_token_id")}
