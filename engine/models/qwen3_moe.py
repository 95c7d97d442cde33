"""Qwen3-MoE: Qwen3's attention (q/k norm); on sparse layers (every decoder_sparse_step-th, except
mlp_only_layers) a softmax top-k router with norm_topk_prob and routed experts, no shared expert."""

from engine.layers.fused_moe import EXPERT_MAPPING
from engine.layers.moe import SparseMoeBlock
from engine.model_config import ModelConfig
from engine.models.llama import LlamaMLP
from engine.models.qwen3 import Qwen3DecoderLayer, Qwen3ForCausalLM


class Qwen3MoeDecoderLayer(Qwen3DecoderLayer):
    def make_mlp(self, cfg: ModelConfig, layer: int):
        return SparseMoeBlock(cfg) if cfg.is_moe_layer(layer) else LlamaMLP(cfg)


class Qwen3MoeForCausalLM(Qwen3ForCausalLM):
    layer_cls = Qwen3MoeDecoderLayer
    expert_modules_mapping = EXPERT_MAPPING
