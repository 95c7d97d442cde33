"""Gemma 2 (`Gemma2ForCausalLM`): Llama's layout with Gemma's differences, each as HF's
modeling_gemma2 computes it:
- token embeddings times sqrt(hidden_size), the factor rounded to the model's dtype first;
- RMSNorm over (1 + weight) in float32 (GemmaRMSNorm), four per layer: before and after the
  attention, before and after the MLP;
- a gelu-tanh gated MLP;
- attention scaled by query_pre_attn_scalar ** -0.5 instead of head_dim's;
- attention scores and final logits soft-capped: cap * tanh(x / cap);
- a sliding window on the layers layer_types marks "sliding_attention" (layers 0, 2, 4...),
  full attention on the others;
- the LM head tied to the embedding.

Sharding is Llama's, as data: q/k/v and gate/up packed and split over TP by heads and by the
intermediate dim, o and down split by rows, the vocabulary split; a PP stage builds only its
layer range. Gemma 3 (engine/models/gemma3.py) builds on these classes.
"""

import torch
from torch import nn

from engine.layers.attention import PagedAttention
from engine.layers.mlp import GatedMLP
from engine.layers.norm import GemmaRMSNorm
from engine.model_config import ModelConfig
from engine.models.gemma_config import FULL, SLIDING
from engine.models.llama import LlamaAttention, LlamaForCausalLM


class Gemma2Attention(LlamaAttention):
    """Llama's attention with Gemma's scale, soft cap and, on sliding layers, window.
    `rotary` maps a layer type to its rotary embedding."""

    def __init__(self, cfg: ModelConfig, rotary: dict, layer: int):
        super().__init__(cfg, rotary[cfg.layer_types[layer]], layer)
        self.attn = PagedAttention(self.heads, self.kv_heads, self.d,
                                   cfg.query_pre_attn_scalar ** -0.5,
                                   sliding_window=cfg.sliding_window(layer),
                                   logits_soft_cap=cfg.attn_logit_softcapping)


class Gemma2DecoderLayer(nn.Module):
    attention_cls = Gemma2Attention

    def __init__(self, cfg: ModelConfig, rotary: dict, layer: int):
        super().__init__()
        h, eps = cfg.hidden_size, cfg.norm_eps
        self.input_layernorm = GemmaRMSNorm(h, eps)
        self.self_attn = self.attention_cls(cfg, rotary, layer)
        self.post_attention_layernorm = GemmaRMSNorm(h, eps)
        self.pre_feedforward_layernorm = GemmaRMSNorm(h, eps)
        self.mlp = GatedMLP(h, cfg.intermediate_size, cfg.hidden_act)
        self.post_feedforward_layernorm = GemmaRMSNorm(h, eps)

    def forward(self, positions, hidden, residual, meta):
        """The residual stream travels beside `hidden` (Llama's convention): the norm after
        each residual add takes the add in too, and the next layer's input norm adds this
        layer's output."""
        if residual is None:
            residual, hidden = hidden, self.input_layernorm(hidden)
        else:
            hidden, residual = self.input_layernorm(hidden, residual)
        hidden = self.post_attention_layernorm(self.self_attn(positions, hidden, meta))
        hidden, residual = self.pre_feedforward_layernorm(hidden, residual)
        return self.post_feedforward_layernorm(self.mlp(hidden)), residual


class Gemma2ForCausalLM(LlamaForCausalLM):
    layer_cls = Gemma2DecoderLayer
    norm_cls = GemmaRMSNorm

    def __init__(self, cfg: ModelConfig, layer_range: tuple[int, int], is_first: bool,
                 is_last: bool):
        super().__init__(cfg, layer_range, is_first, is_last)
        # Built in the model's dtype: HF multiplies by the factor rounded to it (sqrt(3072)
        # is 55.5 in bf16).
        self.register_buffer("embed_scale", torch.tensor(cfg.hidden_size ** 0.5),
                             persistent=False)

    def make_rotary(self, cfg: ModelConfig) -> dict:
        rotary = super().make_rotary(cfg)
        return {SLIDING: rotary, FULL: rotary}

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens(input_ids) * self.embed_scale

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = super().compute_logits(hidden)
        cap = self.cfg.final_logit_softcapping
        return logits if cap is None else torch.tanh(logits / cap) * cap
