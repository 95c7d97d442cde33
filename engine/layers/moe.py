"""SparseMoeBlock: one MoE layer as the model files declare it: router (`gate`), routed experts
(`experts`), and the shared experts a family has, under the names its checkpoints use:
- Qwen2-MoE: `shared_expert` scaled by sigmoid(`shared_expert_gate`(x)) per token;
- DeepSeek-V2/V3: `shared_experts`, a plain MLP of n_shared_experts x moe_intermediate_size.
"""

import torch
from torch import nn

from engine.layers.fused_moe import FusedMoE
from engine.layers.mlp import GatedMLP
from engine.layers.router import TopKRouter
from engine.model_config import ModelConfig


class SparseMoeBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h = cfg.hidden_size
        self.gate = TopKRouter(h, cfg.num_experts, cfg.num_experts_per_tok, cfg.norm_topk_prob,
                               cfg.scoring_func, cfg.n_group, cfg.topk_group,
                               cfg.routed_scaling_factor,
                               round_weights=cfg.family in ("qwen2_moe", "qwen3_moe"))
        self.experts = FusedMoE(cfg.num_experts, h, cfg.moe_intermediate_size)
        self.shared_expert = self.shared_expert_gate = self.shared_experts = None
        if cfg.shared_expert_intermediate_size:
            self.shared_expert = GatedMLP(h, cfg.shared_expert_intermediate_size)
            self.shared_expert_gate = nn.Linear(h, 1, bias=False)
            self.shared_expert_gate.weight.requires_grad_(False)
        if cfg.n_shared_experts:
            self.shared_experts = GatedMLP(h, cfg.n_shared_experts * cfg.moe_intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights, ids = self.gate(x)
        out = self.experts(x, weights, ids)
        if self.shared_expert is not None:
            out = out + torch.sigmoid(self.shared_expert_gate(x)) * self.shared_expert(x)
        if self.shared_experts is not None:
            out = out + self.shared_experts(x)
        return out
