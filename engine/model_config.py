"""ModelConfig: the shape of a model, normalized from a HF config dict, with no I/O.

The engine (to build modules and size the KV cache) and the planner (to advise TP/PP without
weights) both read this one description, so a prediction and a real run cannot disagree.
"""

from dataclasses import dataclass, field

from engine.layers.rope_scaling import Rope, max_positions, normalize_scaling
from onenode.errors import ModelLoadError

# HF architecture name -> our model family (engine/models/<family>.py).
ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "llama",
    "Phi3ForCausalLM": "phi3",
    "GPT2LMHeadModel": "gpt2",
    "OPTForCausalLM": "opt",
}


@dataclass(frozen=True, slots=True)
class ModelConfig:
    architecture: str  # HF name, e.g. "LlamaForCausalLM"
    family: str  # "llama" | "phi3" | "gpt2" | "opt"
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None  # normalized (rope_scaling.normalize_scaling); None: plain
    tie_word_embeddings: bool = False
    attention_bias: bool = False  # Qwen2: bias on q/k/v
    hidden_act: str = "silu"
    torch_dtype: str = "float32"  # dtype the checkpoint was saved in
    eos_token_ids: tuple[int, ...] = ()
    bos_token_id: int | None = None
    # OPT only: embeddings may be smaller than hidden (project_in/out) and LN placement.
    word_embed_proj_dim: int | None = None
    do_layer_norm_before: bool = True
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    partial_rotary_factor: float = 1.0  # Phi-4-mini rotates 3/4 of each head

    @property
    def gated_mlp(self) -> bool:
        """Gate, up and down matrices (SwiGLU) rather than GPT-2/OPT's two."""
        return self.family not in ("gpt2", "opt")

    @property
    def rope(self) -> Rope | None:
        if self.family in ("gpt2", "opt"):
            return None  # learned positions
        return Rope(self.head_dim, self.rope_theta, self.max_position_embeddings,
                    self.rope_scaling, self.partial_rotary_factor)

    @property
    def max_supported_positions(self) -> int:
        """Positions the model handles: its learned table, or its rope after scaling."""
        rope = self.rope
        return self.max_position_embeddings if rope is None else max_positions(rope)

    @property
    def num_params(self) -> int:
        """Parameter count (embeddings counted once when tied); used for weight-memory plans."""
        h, i, v, l = self.hidden_size, self.intermediate_size, self.vocab_size, self.num_layers
        q = self.num_heads * self.head_dim
        kv = self.num_kv_heads * self.head_dim
        attn = h * q + 2 * h * kv + q * h
        mlp = (3 if self.gated_mlp else 2) * h * i
        per_layer = attn + mlp + 4 * h
        embed = v * h * (1 if self.tie_word_embeddings else 2)
        pos = self.max_position_embeddings * h if self.family in ("gpt2", "opt") else 0
        return l * per_layer + embed + pos + h


def _eos_ids(cfg: dict) -> tuple[int, ...]:
    eos = cfg.get("eos_token_id")
    if eos is None:
        return ()
    return tuple(eos) if isinstance(eos, list) else (int(eos),)


def model_config_from_hf(cfg: dict) -> ModelConfig:
    """Build a ModelConfig from a HF config.json dict; unknown architectures name the supported."""
    archs = cfg.get("architectures") or []
    arch = next((a for a in archs if a in ARCHITECTURES), None)
    if arch is None:
        arch = _guess_arch(cfg.get("model_type", ""))
    if arch is None:
        raise ModelLoadError(
            f"unsupported architecture {archs or cfg.get('model_type')!r}; "
            f"onenode supports {', '.join(sorted(ARCHITECTURES))}"
        )
    family = ARCHITECTURES[arch]
    return {"llama": _llama, "phi3": _phi3, "gpt2": _gpt2, "opt": _opt}[family](arch, cfg)


def _guess_arch(model_type: str) -> str | None:
    by_type = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
               "qwen2": "Qwen2ForCausalLM", "phi3": "Phi3ForCausalLM", "gpt2": "GPT2LMHeadModel",
               "opt": "OPTForCausalLM"}
    return by_type.get(model_type)


def _common(cfg: dict) -> dict:
    return dict(torch_dtype=str(cfg.get("torch_dtype") or "float32").replace("torch.", ""),
                eos_token_ids=_eos_ids(cfg), bos_token_id=cfg.get("bos_token_id"))


def rope_fields(cfg: dict) -> dict:
    """rope_theta, rope_scaling and partial_rotary_factor from either spelling HF writes: the
    older top-level keys and `rope_scaling`, or transformers 5's `rope_parameters` (which holds
    rope_theta too). As in HF, `rope_scaling` wins over `rope_parameters`, and values inside the
    dict over top-level ones."""
    params = cfg.get("rope_scaling") or cfg.get("rope_parameters") or {}
    try:
        scaling = normalize_scaling(params, cfg)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None
    return dict(rope_theta=float(params.get("rope_theta") or cfg.get("rope_theta") or 10000.0),
                rope_scaling=scaling,
                partial_rotary_factor=float(params.get("partial_rotary_factor")
                                            or cfg.get("partial_rotary_factor") or 1.0))


def _llama(arch: str, cfg: dict, family: str = "llama") -> ModelConfig:
    heads = cfg["num_attention_heads"]
    hidden = cfg["hidden_size"]
    return ModelConfig(
        architecture=arch, family=family, hidden_size=hidden,
        num_layers=cfg["num_hidden_layers"], num_heads=heads,
        num_kv_heads=cfg.get("num_key_value_heads") or heads,
        head_dim=cfg.get("head_dim") or hidden // heads,
        intermediate_size=cfg["intermediate_size"], vocab_size=cfg["vocab_size"],
        max_position_embeddings=cfg.get("max_position_embeddings", 2048),
        norm_eps=cfg.get("rms_norm_eps", 1e-6), **rope_fields(cfg),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        attention_bias=bool(cfg.get("attention_bias", False)) or arch == "Qwen2ForCausalLM",
        hidden_act=cfg.get("hidden_act", "silu"), **_common(cfg),
    )


def _phi3(arch: str, cfg: dict) -> ModelConfig:
    """Phi-3/Phi-4: Llama's shape with fused checkpoint tensors (engine/models/phi3.py)."""
    window = cfg.get("sliding_window")
    if window and window < cfg.get("max_position_embeddings", 4096):
        raise ModelLoadError(f"{arch} with sliding_window={window} is not supported yet: "
                             f"onenode does not apply a sliding window to this family; use a "
                             f"checkpoint without one (Phi-3.5, Phi-4)")
    key = "rope_scaling" if cfg.get("rope_scaling") else "rope_parameters"
    params = cfg.get(key) or {}
    if (params.get("rope_type") or params.get("type")) in ("su", "yarn"):
        # HF's Phi3Config reads early Phi-3 checkpoints' "su" (and "yarn") as longrope.
        cfg = {**cfg, key: {**params, "rope_type": "longrope", "type": "longrope"}}
    return _llama(arch, cfg, family="phi3")


def _gpt2(arch: str, cfg: dict) -> ModelConfig:
    hidden, heads = cfg["n_embd"], cfg["n_head"]
    return ModelConfig(
        architecture=arch, family="gpt2", hidden_size=hidden, num_layers=cfg["n_layer"],
        num_heads=heads, num_kv_heads=heads, head_dim=hidden // heads,
        intermediate_size=cfg.get("n_inner") or 4 * hidden, vocab_size=cfg["vocab_size"],
        max_position_embeddings=cfg.get("n_positions", 1024),
        norm_eps=cfg.get("layer_norm_epsilon", 1e-5), tie_word_embeddings=True,
        attention_bias=True, hidden_act=cfg.get("activation_function", "gelu_new"),
        **_common(cfg),
    )


def _opt(arch: str, cfg: dict) -> ModelConfig:
    hidden, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    return ModelConfig(
        architecture=arch, family="opt", hidden_size=hidden, num_layers=cfg["num_hidden_layers"],
        num_heads=heads, num_kv_heads=heads, head_dim=hidden // heads,
        intermediate_size=cfg["ffn_dim"], vocab_size=cfg["vocab_size"],
        max_position_embeddings=cfg.get("max_position_embeddings", 2048),
        norm_eps=1e-5, tie_word_embeddings=bool(cfg.get("tie_word_embeddings", True)),
        attention_bias=bool(cfg.get("enable_bias", True)),
        hidden_act=cfg.get("activation_function", "relu"),
        word_embed_proj_dim=cfg.get("word_embed_proj_dim", hidden),
        do_layer_norm_before=bool(cfg.get("do_layer_norm_before", True)), **_common(cfg),
    )
