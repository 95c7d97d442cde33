"""Gemma 3 text models (`Gemma3ForCausalLM`, and the text model of an image-text
`Gemma3ForConditionalGeneration` checkpoint): Gemma 2's layer (engine/models/gemma2.py) with, as
HF's modeling_gemma3 computes it:
- a Gemma RMSNorm over each query and key head before rope;
- two rotary embeddings: sliding layers rotate with rope_local_base_freq and no scaling, global
  layers with rope_theta and the config's rope scaling;
- five sliding layers to one global one (sliding_window_pattern 6) unless layer_types says;
- no attention soft cap (HF's Gemma 3 ignores the config's), a final one only when set.
"""

import torch

from engine.layers.norm import GemmaRMSNorm
from engine.layers.rotary import RotaryEmbedding
from engine.model_config import ModelConfig
from engine.models.gemma2 import Gemma2Attention, Gemma2DecoderLayer, Gemma2ForCausalLM
from engine.models.gemma_config import FULL, SLIDING
from engine.models.llama import LlamaForCausalLM


class Gemma3Attention(Gemma2Attention):
    def __init__(self, cfg: ModelConfig, rotary: dict, layer: int):
        super().__init__(cfg, rotary, layer)
        self.q_norm = GemmaRMSNorm(cfg.head_dim, cfg.norm_eps)
        self.k_norm = GemmaRMSNorm(cfg.head_dim, cfg.norm_eps)

    def forward(self, positions, x, meta):
        qkv = self.qkv_proj(x)
        d, n, kvh = self.d, self.heads, self.kv_heads
        # The norms see one head per row.
        q = self.q_norm(qkv[:, :n * d].reshape(-1, d)).view(-1, n, d)
        k = self.k_norm(qkv[:, n * d:(n + kvh) * d].reshape(-1, d)).view(-1, kvh, d)
        qk = self.rotary(positions, torch.cat([q, k], dim=1), meta)
        v = qkv[:, (n + kvh) * d:].view(-1, kvh, d)
        return self.o_proj(self.attn(qk[:, :n], qk[:, n:], v, meta))


class Gemma3DecoderLayer(Gemma2DecoderLayer):
    attention_cls = Gemma3Attention


class Gemma3ForCausalLM(Gemma2ForCausalLM):
    layer_cls = Gemma3DecoderLayer
    # Image-text checkpoints hold the text model under their language model (transformers 5's
    # spelling, then 4's); their vision tower's tensors map to nothing here and are not read.
    checkpoint_prefixes = ("model.language_model.", "language_model.model.", "model.")

    def make_rotary(self, cfg: ModelConfig) -> dict:
        local = RotaryEmbedding(cfg.head_dim, cfg.max_position_embeddings, cfg.rope_local_theta,
                                None)
        return {FULL: LlamaForCausalLM.make_rotary(self, cfg), SLIDING: local}
