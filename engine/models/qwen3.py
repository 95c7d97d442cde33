"""Qwen3 (dense): Llama's layer with an RMSNorm over each query and key head before rope, and
explicit head_dim. Qwen3-MoE shares this attention."""

import torch

from engine.layers.norm import RMSNorm
from engine.model_config import ModelConfig
from engine.models.llama import LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM


class Qwen3Attention(LlamaAttention):
    qk_norm_cls = RMSNorm  # Gemma 3 (engine/models/gemma3.py) norms its heads with Gemma's

    def __init__(self, cfg: ModelConfig, rotary, layer: int = 0):
        super().__init__(cfg, rotary, layer)
        self.q_norm = self.qk_norm_cls(cfg.head_dim, cfg.norm_eps)
        self.k_norm = self.qk_norm_cls(cfg.head_dim, cfg.norm_eps)

    def forward(self, positions, x, meta):
        qkv = self.qkv_proj(x)
        d, n, q_len = self.d, self.heads, self.heads * self.d
        k_len = self.kv_heads * self.d
        # The norms see one head per row (a 2-D input takes the fused CPU kernel).
        q = self.q_norm(qkv[:, :q_len].reshape(-1, d)).view(-1, n, d)
        k = self.k_norm(qkv[:, q_len:q_len + k_len].reshape(-1, d)).view(-1, self.kv_heads, d)
        qk = self.rotary(positions, torch.cat([q, k], dim=1), meta)
        v = qkv[:, q_len + k_len:].view(-1, self.kv_heads, d)
        return self.o_proj(self.attn(qk[:, :n], qk[:, n:], v, meta))


class Qwen3DecoderLayer(LlamaDecoderLayer):
    attention_cls = Qwen3Attention


class Qwen3ForCausalLM(LlamaForCausalLM):
    layer_cls = Qwen3DecoderLayer
