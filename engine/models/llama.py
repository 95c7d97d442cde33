"""Llama family (Llama 2/3, Mistral, Qwen2): RoPE, GQA, RMSNorm, SwiGLU, optional QKV bias.

Readable top to bottom; distribution is data: TP via the parallel layers' shard specs, PP via the
layer range this stage owns (other layers are never built).
"""

import torch
from torch import nn

from engine.layers.activation import silu_and_mul
from engine.layers.attention import PagedAttention
from engine.layers.embedding import ParallelLMHead, VocabParallelEmbedding
from engine.layers.linear import ColumnParallelLinear, Part, RowParallelLinear
from engine.layers.norm import RMSNorm
from engine.layers.rotary import RotaryEmbedding
from engine.model_config import ModelConfig
from engine.parallel.parallel_state import tp


class LlamaAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        size = tp().size
        d = cfg.head_dim
        self.q_part, self.kv_part = Part(cfg.num_heads, d), Part(cfg.num_kv_heads, d)
        self.qkv_proj = ColumnParallelLinear(cfg.hidden_size, [self.q_part, self.kv_part,
                                                               self.kv_part], cfg.attention_bias)
        self.o_proj = RowParallelLinear(cfg.num_heads * d, cfg.hidden_size, bias=False)
        self.heads, self.kv_heads = cfg.num_heads // size, self.kv_part.local_units(size)
        self.rotary = RotaryEmbedding(d, cfg.max_position_embeddings, cfg.rope_theta,
                                      cfg.rope_scaling)
        self.attn = PagedAttention(self.heads, self.kv_heads, d, d ** -0.5)
        self.d = d

    def forward(self, positions, x, meta):
        qkv = self.qkv_proj(x)
        q_len, kv_len = self.heads * self.d, self.kv_heads * self.d
        q, k, v = qkv.split([q_len, kv_len, kv_len], dim=-1)
        q = q.view(-1, self.heads, self.d)
        k = k.view(-1, self.kv_heads, self.d)
        q, k = self.rotary(positions, q, k)
        out = self.attn(q, k, v.reshape(-1, self.kv_heads, self.d), meta)
        return self.o_proj(out)


class LlamaMLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        part = Part(1, cfg.intermediate_size)
        self.gate_up_proj = ColumnParallelLinear(cfg.hidden_size, [_split(part), _split(part)],
                                                 bias=False)
        self.down_proj = RowParallelLinear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(silu_and_mul(self.gate_up_proj(x)))


def _split(part: Part) -> Part:
    """An intermediate dimension split evenly over TP ranks (one 'unit' per rank)."""
    size = tp().size
    return Part(size, part.unit // size)


class LlamaDecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.norm_eps)
        self.self_attn = LlamaAttention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.norm_eps)
        self.mlp = LlamaMLP(cfg)

    def forward(self, positions, hidden, residual, meta):
        if residual is None:
            residual, hidden = hidden, self.input_layernorm(hidden)
        else:
            hidden, residual = self.input_layernorm(hidden, residual)
        hidden = self.self_attn(positions, hidden, meta)
        hidden, residual = self.post_attention_layernorm(hidden, residual)
        return self.mlp(hidden), residual


class LlamaForCausalLM(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_range: tuple[int, int], is_first: bool,
                 is_last: bool):
        super().__init__()
        self.cfg, self.layer_range = cfg, layer_range
        self.is_first, self.is_last = is_first, is_last
        self.embed_tokens = VocabParallelEmbedding(cfg.vocab_size, cfg.hidden_size) \
            if is_first else None
        self.layers = nn.ModuleDict({str(i): LlamaDecoderLayer(cfg) for i in range(*layer_range)})
        if is_last:
            self.norm = RMSNorm(cfg.hidden_size, cfg.norm_eps)
            self.lm_head = ParallelLMHead(cfg.vocab_size, cfg.hidden_size)
            if is_first and cfg.tie_word_embeddings:
                self.lm_head.weight = self.embed_tokens.weight  # one copy when both live here

    def forward(self, input_ids, positions, meta, intermediate=None):
        if self.is_first:
            hidden, residual = self.embed_tokens(input_ids), None
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

    def load_weights(self, reader) -> None:
        for i, layer in self.layers.items():
            p = f"model.layers.{i}."
            for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
                for kind in ("weight", "bias") if self.cfg.attention_bias else ("weight",):
                    layer.self_attn.qkv_proj.load_shard(f"{p}self_attn.{proj}.{kind}", j,
                                                        reader.fetch)
            layer.self_attn.o_proj.load_shard(f"{p}self_attn.o_proj.weight", reader.fetch)
            for j, proj in enumerate(("gate_proj", "up_proj")):
                layer.mlp.gate_up_proj.load_shard(f"{p}mlp.{proj}.weight", j, reader.fetch)
            layer.mlp.down_proj.load_shard(f"{p}mlp.down_proj.weight", reader.fetch)
            for norm in ("input_layernorm", "post_attention_layernorm"):
                getattr(layer, norm).weight.data.copy_(reader.fetch(f"{p}{norm}.weight", None,
                                                                    None, None))
        if self.embed_tokens is not None:
            self.embed_tokens.load_shard("model.embed_tokens.weight", reader.fetch)
        if self.is_last:
            self.norm.weight.data.copy_(reader.fetch("model.norm.weight", None, None, None))
            head = "model.embed_tokens.weight" if self.cfg.tie_word_embeddings \
                else "lm_head.weight"
            if not (self.is_first and self.cfg.tie_word_embeddings):
                self.lm_head.load_shard(head, reader.fetch)
