"""Llama family (Llama 2/3, Mistral, Qwen2): RoPE, GQA, RMSNorm, SwiGLU, optional QKV bias, and
each layer's sliding window where the config gives one (Mistral, Qwen2's upper layers).

Readable top to bottom; distribution is data: TP via the parallel layers' shard specs, PP via the
layer range this stage owns (other layers are never built).
"""

from typing import ClassVar

import torch
from torch import nn

from engine.layers.attention import PagedAttention
from engine.layers.embedding import ParallelLMHead, VocabParallelEmbedding
from engine.layers.linear import ColumnParallelLinear, Part, RowParallelLinear
from engine.layers.mlp import GatedMLP
from engine.layers.norm import RMSNorm
from engine.layers.rotary import RotaryEmbedding
from engine.model_config import ModelConfig
from engine.parallel.parallel_state import tp


class LlamaAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, rotary: RotaryEmbedding, layer: int = 0):
        super().__init__()
        size = tp().size
        d = cfg.head_dim
        self.q_part, self.kv_part = Part(cfg.num_heads, d), Part(cfg.num_kv_heads, d)
        self.qkv_proj = ColumnParallelLinear(cfg.hidden_size, [self.q_part, self.kv_part,
                                                               self.kv_part], cfg.attention_bias,
                                             shard_ids=("q", "k", "v"))
        self.o_proj = RowParallelLinear(cfg.num_heads * d, cfg.hidden_size, bias=False)
        self.heads, self.kv_heads = cfg.num_heads // size, self.kv_part.local_units(size)
        self.rotary = rotary
        self.attn = PagedAttention(self.heads, self.kv_heads, d, d ** -0.5,
                                   sliding_window=cfg.sliding_window(layer))
        self.d = d

    def forward(self, positions, x, meta):
        qkv = self.qkv_proj(x)
        qk_len = (self.heads + self.kv_heads) * self.d
        # Queries and keys rotate together: one set of elementwise ops instead of two.
        qk = self.rotary(positions, qkv[:, :qk_len].view(-1, self.heads + self.kv_heads, self.d),
                         meta)
        q, k = qk[:, :self.heads], qk[:, self.heads:]
        out = self.attn(q, k, qkv[:, qk_len:].view(-1, self.kv_heads, self.d), meta)
        return self.o_proj(out)


class LlamaMLP(GatedMLP):
    def __init__(self, cfg: ModelConfig, intermediate_size: int | None = None):
        super().__init__(cfg.hidden_size, intermediate_size or cfg.intermediate_size)


class LlamaDecoderLayer(nn.Module):
    """Families built on Llama's layer swap in their attention class and their MLP (a MoE
    block on sparse layers) under the name their checkpoints use."""
    attention_cls = LlamaAttention
    mlp_name = "mlp"

    def __init__(self, cfg: ModelConfig, rotary: RotaryEmbedding, layer: int = 0):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.norm_eps)
        self.self_attn = self.attention_cls(cfg, rotary, layer)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.norm_eps)
        setattr(self, self.mlp_name, self.make_mlp(cfg, layer))

    def make_mlp(self, cfg: ModelConfig, layer: int) -> nn.Module:
        return LlamaMLP(cfg)

    def forward(self, positions, hidden, residual, meta):
        if residual is None:
            residual, hidden = hidden, self.input_layernorm(hidden)
        else:
            hidden, residual = self.input_layernorm(hidden, residual)
        hidden = self.self_attn(positions, hidden, meta)
        hidden, residual = self.post_attention_layernorm(hidden, residual)
        return getattr(self, self.mlp_name)(hidden), residual


class LlamaForCausalLM(nn.Module):
    layer_cls = LlamaDecoderLayer
    norm_cls = RMSNorm  # the final norm
    checkpoint_prefixes = ("model.",)
    packed_modules_mapping: ClassVar[dict] = {
        "q_proj": ("qkv_proj", "q"), "k_proj": ("qkv_proj", "k"), "v_proj": ("qkv_proj", "v"),
        "gate_proj": ("gate_up_proj", "gate"), "up_proj": ("gate_up_proj", "up"),
    }

    def __init__(self, cfg: ModelConfig, layer_range: tuple[int, int], is_first: bool,
                 is_last: bool):
        super().__init__()
        self.cfg, self.layer_range = cfg, layer_range
        self.is_first, self.is_last = is_first, is_last
        self.embed_tokens = VocabParallelEmbedding(cfg.vocab_size, cfg.hidden_size) \
            if is_first else None
        rotary = self.make_rotary(cfg)
        self.layers = nn.ModuleDict({str(i): self.layer_cls(cfg, rotary, i)
                                     for i in range(*layer_range)})
        if is_last:
            self.norm = self.norm_cls(cfg.hidden_size, cfg.norm_eps)
            self.lm_head = ParallelLMHead(cfg.vocab_size, cfg.hidden_size)
            if is_first and cfg.tie_word_embeddings:
                self.lm_head.weight = self.embed_tokens.weight  # one copy when both live here
        self.tied_weights = {"lm_head.weight": "embed_tokens.weight"} \
            if cfg.tie_word_embeddings else {}

    def make_rotary(self, cfg: ModelConfig):
        """The rotary embedding every layer is given (Gemma 3: one per layer type)."""
        return RotaryEmbedding(cfg.head_dim, cfg.max_position_embeddings, cfg.rope_theta,
                               cfg.rope_scaling, cfg.partial_rotary_factor)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens(input_ids)

    def forward(self, input_ids, positions, meta, intermediate=None):
        if self.is_first:
            hidden, residual = self.embed(input_ids), None
        else:
            hidden, residual = intermediate["hidden"], intermediate["residual"]
        for layer in self.layers.values():
            hidden, residual = layer(positions, hidden, residual, meta)
        if not self.is_last:
            return {"hidden": hidden, "residual": residual}
        hidden, _ = self.norm(hidden, residual)
        return hidden

    def intermediate_spec(self, num_tokens: int) -> dict:
        dtype = next(self.parameters()).dtype
        shape = (num_tokens, self.cfg.hidden_size)
        return {"hidden": (shape, dtype), "residual": (shape, dtype)}

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head.logits(hidden)

    def attention_layers(self) -> list[PagedAttention]:
        return [layer.self_attn.attn for layer in self.layers.values()]
