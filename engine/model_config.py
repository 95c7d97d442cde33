"""ModelConfig: the shape of a model, normalized from a HF config dict, with no I/O.

The engine (to build modules and size the KV cache) and the planner (to advise TP/PP without
weights) both read this one description, so a prediction and a real run cannot disagree.
"""

from dataclasses import dataclass, field, replace

from engine.layer_windows import layer_windows
from engine.layers.rope_scaling import Rope, max_positions, normalize_scaling
from engine.models.gemma_config import GEMMA_ARCHITECTURES, GEMMA_MODEL_TYPES, gemma_fields
from onenode.errors import ModelLoadError

# HF architecture name -> our model family (engine/models/<family>.py).
ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "llama",
    "Phi3ForCausalLM": "phi3",
    "GPT2LMHeadModel": "gpt2",
    "OPTForCausalLM": "opt",
    "Qwen3ForCausalLM": "qwen3",
    "MixtralForCausalLM": "mixtral",
    "Qwen2MoeForCausalLM": "qwen2_moe",
    "Qwen3MoeForCausalLM": "qwen3_moe",
    "DeepseekV3ForCausalLM": "deepseek_v3",
    **GEMMA_ARCHITECTURES,
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
    qk_norm: bool = False  # Qwen3: RMSNorm on each query and key head before rope
    rope_interleave: bool = False  # MLA: rope dims paired (0, 1), (2, 3)... (HF's default for it)
    # Mixture of experts (0 experts: a dense model). HF's names; normalized by moe_fields().
    num_experts: int = 0  # routed experts per MoE layer (num_local_experts, n_routed_experts)
    num_experts_per_tok: int = 0  # top-k
    moe_intermediate_size: int = 0  # one routed expert's intermediate size
    norm_topk_prob: bool = True  # renormalize the top-k weights to sum to 1
    shared_expert_intermediate_size: int = 0  # Qwen2-MoE's shared expert (sigmoid-gated)
    n_shared_experts: int = 0  # DeepSeek's always-on experts (moe_intermediate_size each)
    decoder_sparse_step: int = 1  # Qwen MoE: every n-th layer is sparse
    mlp_only_layers: tuple[int, ...] = ()  # Qwen MoE: these layers stay dense
    first_k_dense_replace: int = 0  # DeepSeek: the first k layers are dense
    scoring_func: str = "softmax"  # router scores: "softmax" or "sigmoid" (DeepSeek-V3)
    n_group: int = 1  # DeepSeek grouped top-k: expert groups, and how many are kept
    topk_group: int = 1
    routed_scaling_factor: float = 1.0
    # Multi-head latent attention (DeepSeek-V2/V3); kv_lora_rank 0: not MLA.
    q_lora_rank: int | None = None
    kv_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    # quantization_config.quant_method of the checkpoint (None: unquantized); see
    # engine/models/fp8.py for the one onenode loads ("fp8", dequantized at load).
    quantization: str | None = None
    weight_block_size: tuple[int, ...] = ()  # fp8: the [rows, cols] tile one scale covers
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    partial_rotary_factor: float = 1.0  # Phi-4-mini rotates 3/4 of each head
    # Each layer's sliding window (engine/layer_windows.py), None where it attends to the whole
    # context; (): no layer has one.
    layer_windows: tuple[int | None, ...] = ()
    query_pre_attn_scalar: float | None = None  # Gemma: softmax scale is its -0.5 power
    attn_logit_softcapping: float | None = None  # scores become cap * tanh(score / cap)
    final_logit_softcapping: float | None = None  # the same on the output logits
    layer_types: tuple[str, ...] = ()  # "sliding_attention" or "full_attention": picks the rope
    rope_local_theta: float | None = None  # Gemma 3: rope base of the sliding layers

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
        rope = None if self.family == "gemma3" else self.rope  # Gemma 3's counts its scaling
        return self.max_position_embeddings if rope is None else max_positions(rope)

    def sliding_window(self, layer: int) -> int | None:
        """Decoder layer `layer`'s sliding window (None: full causal attention)."""
        return self.layer_windows[layer] if self.layer_windows else None

    @property
    def num_params(self) -> int:
        """Every parameter (all experts resident; embeddings once when tied): weight memory."""
        from engine.model_params import num_params  # late: model_params imports this module

        return num_params(self)

    @property
    def num_active_params(self) -> int:
        """Parameters one token reads (top-k experts, shared experts, attention, embeddings):
        what decode speed scales with. Equals num_params for a dense model."""
        from engine.model_params import num_active_params

        return num_active_params(self)

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    def is_moe_layer(self, layer: int) -> bool:
        """Whether decoder layer `layer` has routed experts (else a dense MLP), by each family's
        rule: Qwen's sparse step and mlp_only_layers, DeepSeek's first k dense layers."""
        if not self.is_moe or layer < self.first_k_dense_replace or layer in self.mlp_only_layers:
            return False
        return (layer + 1) % max(1, self.decoder_sparse_step) == 0


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
    if family in ("gemma2", "gemma3"):
        flat, gemma = gemma_fields(arch, cfg, family)
        return replace(_llama(arch, flat, family), **gemma)
    if family in ("gpt2", "opt", "phi3"):
        return {"gpt2": _gpt2, "opt": _opt, "phi3": _phi3}[family](arch, cfg)
    return _llama(arch, cfg, family)


def _guess_arch(model_type: str) -> str | None:
    by_type = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
               "qwen2": "Qwen2ForCausalLM", "phi3": "Phi3ForCausalLM", "gpt2": "GPT2LMHeadModel",
               "opt": "OPTForCausalLM", "qwen3": "Qwen3ForCausalLM", "mixtral": "MixtralForCausalLM",
               "qwen2_moe": "Qwen2MoeForCausalLM", "qwen3_moe": "Qwen3MoeForCausalLM",
               "deepseek_v3": "DeepseekV3ForCausalLM"}
    return by_type.get(model_type) or GEMMA_MODEL_TYPES.get(model_type)


def _common(cfg: dict) -> dict:
    # transformers 5 writes `dtype`, 4.x wrote `torch_dtype`: either is the checkpoint's dtype.
    saved = cfg.get("dtype") or cfg.get("torch_dtype") or "float32"
    return dict(torch_dtype=str(saved).replace("torch.", ""),
                eos_token_ids=_eos_ids(cfg), bos_token_id=cfg.get("bos_token_id"),
                **_quantization(cfg.get("quantization_config")))


def _quantization(quant: dict | None) -> dict:
    """The one quantized format onenode loads: FP8 with 2-D block scales (dequantized at load);
    any other quantization_config is refused here rather than loaded as garbage."""
    if not quant:
        return {}
    method, block = quant.get("quant_method"), tuple(quant.get("weight_block_size") or ())
    if method != "fp8" or len(block) != 2:
        what = f"{method!r}" + ("" if method != "fp8" else " without a 2-D weight_block_size")
        raise ModelLoadError(f"quantization_config quant_method {what} is not supported; "
                             f"onenode loads unquantized or FP8 block-quantized (DeepSeek-V3 "
                             f"style) safetensors, or GGUF: use such a release of this model")
    return dict(quantization=method, weight_block_size=block)


def moe_fields(cfg: dict) -> dict:
    """MoE and MLA fields of a HF config under ModelConfig's names (absent: a dense model)."""
    experts = cfg.get("num_local_experts") or cfg.get("num_experts") or \
        cfg.get("n_routed_experts") or 0
    out = dict(num_experts=int(experts),
               num_experts_per_tok=int(cfg.get("num_experts_per_tok") or 0) if experts else 0,
               moe_intermediate_size=int(cfg.get("moe_intermediate_size") or
                                         (cfg["intermediate_size"] if experts else 0)),
               norm_topk_prob=bool(cfg.get("norm_topk_prob", True)),
               shared_expert_intermediate_size=int(cfg.get("shared_expert_intermediate_size")
                                                   or 0),
               n_shared_experts=int(cfg.get("n_shared_experts") or 0),
               decoder_sparse_step=int(cfg.get("decoder_sparse_step") or 1),
               mlp_only_layers=tuple(cfg.get("mlp_only_layers") or ()),
               first_k_dense_replace=int(cfg.get("first_k_dense_replace") or 0),
               scoring_func=str(cfg.get("scoring_func") or "softmax"),
               n_group=int(cfg.get("n_group") or 1), topk_group=int(cfg.get("topk_group") or 1),
               routed_scaling_factor=float(cfg.get("routed_scaling_factor") or 1.0))
    if cfg.get("kv_lora_rank"):
        out.update(rope_interleave=bool(cfg.get("rope_interleave", True)),
                   q_lora_rank=cfg.get("q_lora_rank"), kv_lora_rank=int(cfg["kv_lora_rank"]),
                   qk_nope_head_dim=int(cfg["qk_nope_head_dim"]),
                   qk_rope_head_dim=int(cfg["qk_rope_head_dim"]),
                   v_head_dim=int(cfg["v_head_dim"]))
    return out


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
    """Llama-shaped families (Mistral, Qwen2/3, Phi-3, the MoE families): one parser."""
    heads = cfg["num_attention_heads"]
    hidden = cfg["hidden_size"]
    if family == "deepseek_v3":  # sigmoid-scored routing is the family's, not a config key
        cfg = {"scoring_func": "sigmoid", **cfg}
    return ModelConfig(
        architecture=arch, family=family, hidden_size=hidden,
        num_layers=cfg["num_hidden_layers"], num_heads=heads,
        layer_windows=layer_windows(arch, cfg, cfg["num_hidden_layers"]),
        num_kv_heads=cfg.get("num_key_value_heads") or heads,
        head_dim=cfg.get("head_dim") or hidden // heads,
        intermediate_size=cfg["intermediate_size"], vocab_size=cfg["vocab_size"],
        max_position_embeddings=cfg.get("max_position_embeddings", 2048),
        norm_eps=cfg.get("rms_norm_eps", 1e-6), **rope_fields(cfg),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        attention_bias=bool(cfg.get("attention_bias", False))
        or arch in ("Qwen2ForCausalLM", "Qwen2MoeForCausalLM"),
        hidden_act=cfg.get("hidden_act", "silu"),
        qk_norm=family in ("qwen3", "qwen3_moe", "gemma3"), **moe_fields(cfg), **_common(cfg),
    )


def _phi3(arch: str, cfg: dict) -> ModelConfig:
    """Phi-3/Phi-4: Llama's shape with fused checkpoint tensors (engine/models/phi3.py)."""
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
