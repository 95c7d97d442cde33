"""Gemma 2 / Gemma 3 config.json -> the flat keys model_config's Llama parser reads, plus Gemma's
own ModelConfig fields. Pure (no torch): the planner reads it too.

Keys a config.json leaves out take HF's defaults (Gemma2Config, Gemma3TextConfig): Gemma 3's
multimodal releases list only a few keys in their text_config, and Gemma 2 soft-caps unless its
config says null. Rope comes in either spelling HF writes:
- released configs: rope_theta (global layers), rope_local_base_freq (sliding layers),
  rope_scaling (global layers only) and sliding_window_pattern (every n-th layer is global);
- transformers 5: rope_parameters per layer type ({"full_attention": {...},
  "sliding_attention": {...}}) and an explicit layer_types list.

A Gemma3ForConditionalGeneration checkpoint (image-text) loads as its text model: the config's
text_config, the weights under its language model (engine/models/gemma3.py); image inputs are
not supported.
"""

from onenode.errors import ModelLoadError

GEMMA_ARCHITECTURES = {"Gemma2ForCausalLM": "gemma2", "Gemma3ForCausalLM": "gemma3",
                       "Gemma3ForConditionalGeneration": "gemma3"}
GEMMA_MODEL_TYPES = {"gemma2": "Gemma2ForCausalLM", "gemma3_text": "Gemma3ForCausalLM",
                     "gemma3": "Gemma3ForConditionalGeneration"}
SLIDING, FULL = "sliding_attention", "full_attention"

# HF's defaults, where they differ between the two (the rest are shared below).
_DEFAULTS = {
    "gemma2": dict(vocab_size=256000, max_position_embeddings=8192, rope_theta=10000.0,
                   final_logit_softcapping=30.0, attn_logit_softcapping=50.0,
                   sliding_window_pattern=2),
    "gemma3": dict(vocab_size=262208, max_position_embeddings=131072, rope_theta=1_000_000.0,
                   rope_local_base_freq=10000.0, final_logit_softcapping=None,
                   attn_logit_softcapping=None, sliding_window_pattern=6),
}
_SHARED = dict(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26,
               num_attention_heads=8, num_key_value_heads=4, head_dim=256,
               hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6,
               tie_word_embeddings=True, query_pre_attn_scalar=256, sliding_window=4096,
               eos_token_id=1, bos_token_id=2)


def gemma_fields(arch: str, cfg: dict, family: str) -> tuple[dict, dict]:
    """(flat HF keys for the Llama parser, Gemma's ModelConfig fields)."""
    if arch == "Gemma3ForConditionalGeneration":
        cfg = _text_config(cfg)
    if cfg.get("use_bidirectional_attention"):
        raise ModelLoadError(f"{arch} with use_bidirectional_attention (an embedding model, "
                             f"e.g. EmbeddingGemma) is not supported; onenode serves causal "
                             f"language models: use a Gemma {family[-1]} text-generation "
                             f"checkpoint")
    flat = {**_SHARED, **_DEFAULTS[family], **cfg}
    flat["hidden_act"] = flat["hidden_activation"]
    global_theta, local_theta, scaling = _ropes(flat, family)
    types = _layer_types(flat, arch)
    # layer_types is what engine/layer_windows.py reads each layer's window from.
    flat.update(rope_theta=global_theta, rope_scaling=scaling, layer_types=list(types))
    flat.pop("rope_parameters", None)
    gemma = dict(query_pre_attn_scalar=float(flat["query_pre_attn_scalar"]),
                 # HF's Gemma 3 attention never applies the cap its config may name.
                 attn_logit_softcapping=flat["attn_logit_softcapping"] if family == "gemma2"
                 else None,
                 final_logit_softcapping=flat["final_logit_softcapping"], layer_types=types,
                 rope_local_theta=local_theta if family == "gemma3" else None)
    return flat, gemma


def _text_config(cfg: dict) -> dict:
    """The text model of an image-text checkpoint: its text_config, over the top-level keys
    (eos ids and dtype often live only there)."""
    text = cfg.get("text_config") or {}
    outer = {k: v for k, v in cfg.items()
             if k not in ("text_config", "vision_config", "architectures", "model_type")}
    return {**outer, **text}


def _ropes(flat: dict, family: str) -> tuple[float, float | None, dict | None]:
    """(global rope theta, sliding layers' rope theta, global rope scaling)."""
    params = flat.get("rope_parameters") or {}
    if FULL not in params and SLIDING not in params:  # released spelling, or Gemma 2's one dict
        scaling = flat.get("rope_scaling") or (params if family == "gemma2" else None)
        theta = (scaling or {}).get("rope_theta") or flat["rope_theta"]
        return float(theta), flat.get("rope_local_base_freq"), _scaled(scaling)
    full, local = params.get(FULL) or {}, params.get(SLIDING) or {}
    if _scaled(local):
        raise ModelLoadError(f"rope scaling on Gemma's sliding layers "
                             f"({local.get('rope_type')!r}) is not supported; onenode scales the "
                             f"global layers' rope only, as Gemma 3's releases do")
    return (float(full.get("rope_theta") or flat["rope_theta"]),
            float(local.get("rope_theta") or flat["rope_local_base_freq"]), _scaled(full))


def _scaled(params: dict | None) -> dict | None:
    """The scaling dict, or None for plain rope (theta is read separately)."""
    kind = (params or {}).get("rope_type") or (params or {}).get("type") or "default"
    return None if kind == "default" else params


def _layer_types(flat: dict, arch: str) -> tuple[str, ...]:
    """HF's rule when layer_types is absent: every `sliding_window_pattern`-th layer is global,
    counting from 1 (Gemma 2's pattern is 2: layers 0, 2, 4... slide, 1, 3, 5... are global)."""
    n = flat["num_hidden_layers"]
    types = flat.get("layer_types")
    if types is None:
        every = flat["sliding_window_pattern"]
        types = [SLIDING if (i + 1) % every else FULL for i in range(n)]
    if len(types) != n or set(types) - {SLIDING, FULL}:
        raise ModelLoadError(f"{arch} config.json has layer_types {types!r}; it needs one of "
                             f"{SLIDING!r} or {FULL!r} per layer ({n} layers)")
    return tuple(types)
