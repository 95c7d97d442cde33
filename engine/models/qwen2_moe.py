"""Qwen2-MoE: Qwen2's attention (bias on q/k/v); on sparse layers a softmax top-k router
(norm_topk_prob), routed experts, and one shared expert scaled by a per-token sigmoid gate."""

from engine.layers.fused_moe import EXPERT_MAPPING
from engine.layers.moe import SparseMoeBlock
from engine.model_config import ModelConfig
from engine.models.llama import LlamaDecoderLayer, LlamaForCausalLM, LlamaMLP


class Qwen2MoeDecoderLayer(LlamaDecoderLayer):
    def make_mlp(self, cfg: ModelConfig, layer: int):
        return SparseMoeBlock(cfg) if cfg.is_moe_layer(layer) else LlamaMLP(cfg)


class Qwen2MoeForCausalLM(LlamaForCausalLM):
    layer_cls = Qwen2MoeDecoderLayer
    expert_modules_mapping = EXPERT_MAPPING
