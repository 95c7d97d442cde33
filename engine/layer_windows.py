"""Each decoder layer's sliding window, read from a HF config by its family's rule in transformers.

A window W means the query at position q sees the key at k iff 0 <= q - k < W
(engine/layers/sliding_window.py); None means full causal attention. The rules, as transformers
applies them (so that the oracle and onenode agree):
- Mistral, Mixtral, Phi-3: every layer has `sliding_window` (HF's Mistral ignores
  `layer_types`: it warns and points at Ministral);
- Qwen2/Qwen3 and Qwen3-MoE read the window only with `use_sliding_window`; Qwen2/Qwen3 slide
  the layers `layer_types` names "sliding_attention", or without it, layers from
  `max_window_layers` on; Qwen3-MoE slides every layer; Qwen2-MoE slides the even-indexed layers
  (0, 2, ...) below `max_window_layers`;
- any other architecture with `layer_types`: its "sliding_attention" layers (Gemma 2/3, whose
  layer_types engine/models/gemma_config.py fills in from sliding_window_pattern as HF does);
- Llama and the rest: none (HF's Llama has no window, whatever the config says).
"""

from onenode.errors import ModelLoadError

# The architectures whose model files pass each layer's window to its attention.
WINDOWED = ("MistralForCausalLM", "Qwen2ForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM",
            "Gemma3ForConditionalGeneration")
_EVERY_LAYER = ("MistralForCausalLM", "MixtralForCausalLM", "Phi3ForCausalLM",
                "Qwen3MoeForCausalLM")
_GATED = ("Qwen2ForCausalLM", "Qwen3ForCausalLM", "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM")
_NONE = ("LlamaForCausalLM", "GPT2LMHeadModel", "OPTForCausalLM", "DeepseekV3ForCausalLM")


def layer_windows(arch: str, cfg: dict, num_layers: int) -> tuple[int | None, ...]:
    """One window (or None) per layer; () when no layer has one. Refuses, in one line, a
    window on an architecture whose model file does not apply it yet."""
    windows = _hf_windows(arch, cfg, num_layers)
    if not any(windows):
        return ()
    window = next(w for w in windows if w)
    if arch not in WINDOWED and window < cfg.get("max_position_embeddings", 2048):
        raise ModelLoadError(
            f"{arch} with sliding_window={window} is not supported yet: onenode applies "
            f"sliding windows to {', '.join(WINDOWED)} only; use a checkpoint of this "
            f"model without one")
    return windows


def _hf_windows(arch: str, cfg: dict, num_layers: int) -> tuple[int | None, ...]:
    window = cfg.get("sliding_window")
    if arch in _GATED and not cfg.get("use_sliding_window"):
        window = None
    if not window or arch in _NONE:
        return (None,) * num_layers
    if arch in _EVERY_LAYER:
        return (window,) * num_layers
    types = cfg.get("layer_types")
    if types is None:
        if arch == "Qwen2MoeForCausalLM":
            slides = [i % 2 == 0 and i < cfg.get("max_window_layers", 28)
                      for i in range(num_layers)]
        else:
            slides = [i >= cfg.get("max_window_layers", 28) for i in range(num_layers)]
    else:
        if len(types) != num_layers:
            raise ModelLoadError(f"layer_types names {len(types)} layers but the model has "
                                 f"{num_layers}; fix the checkpoint's config.json")
        slides = [t == "sliding_attention" for t in types]
    return tuple(window if s else None for s in slides)
