"""Mixtral: Llama's attention; every layer's MLP is a MoE block (`block_sparse_moe` in the
checkpoints) with a softmax top-k router that always renormalizes (norm_topk_prob is not a Mixtral
config key, so it stays True) and experts stored as w1 (gate) / w3 (up) / w2 (down)."""

from engine.layers.fused_moe import MIXTRAL_EXPERT_MAPPING
from engine.layers.moe import SparseMoeBlock
from engine.model_config import ModelConfig
from engine.models.llama import LlamaDecoderLayer, LlamaForCausalLM


class MixtralDecoderLayer(LlamaDecoderLayer):
    mlp_name = "block_sparse_moe"

    def make_mlp(self, cfg: ModelConfig, layer: int):
        return SparseMoeBlock(cfg)


class MixtralForCausalLM(LlamaForCausalLM):
    layer_cls = MixtralDecoderLayer
    expert_modules_mapping = MIXTRAL_EXPERT_MAPPING
