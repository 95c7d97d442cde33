"""MoE routing: which experts each token goes to, and with what weight.

The routing rules are pure functions of the router logits (unit-tested against HF's); `TopKRouter`
only holds the gate weight (replicated on every rank: each rank routes every token the same way,
so expert parallelism needs no routing traffic) and DeepSeek-V3's score correction bias.
"""

import torch
from torch import nn
from torch.nn import functional as F


def softmax_topk(logits: torch.Tensor, top_k: int, renormalize: bool):
    """Mixtral / Qwen-MoE: softmax over all experts in fp32, keep the k largest, optionally
    rescale them to sum to 1. Returns (weights fp32 [T, k], expert ids [T, k])."""
    probs = torch.softmax(logits.float(), dim=-1)
    weights, ids = torch.topk(probs, top_k, dim=-1)
    if renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights, ids


def grouped_topk(logits: torch.Tensor, top_k: int, renormalize: bool, correction_bias,
                 n_group: int, topk_group: int, scaling: float):
    """DeepSeek-V3: sigmoid scores; the bias only steers the choice (groups ranked by their two
    best biased scores, experts picked inside the `topk_group` best groups); the weights are the
    unbiased scores, renormalized and scaled by `routed_scaling_factor`."""
    scores = logits.float().sigmoid()
    choice = scores if correction_bias is None else scores + correction_bias.float()
    t, e = choice.shape
    group_scores = choice.view(t, n_group, e // n_group).topk(2, dim=-1)[0].sum(dim=-1)
    group_idx = group_scores.topk(topk_group, dim=-1, sorted=False)[1]
    group_mask = torch.zeros_like(group_scores).scatter_(1, group_idx, 1)
    keep = group_mask.unsqueeze(-1).expand(t, n_group, e // n_group).reshape(t, e).bool()
    ids = choice.masked_fill(~keep, float("-inf")).topk(top_k, dim=-1, sorted=False)[1]
    weights = scores.gather(1, ids)
    if renormalize:
        weights = weights / (weights.sum(dim=-1, keepdim=True) + 1e-20)
    return weights * scaling, ids


class TopKRouter(nn.Module):
    """The gate of one MoE layer: `weight` [E, H] (checkpoint `...gate.weight`) and, for sigmoid
    scoring, `e_score_correction_bias` [E]. forward(x) -> (weights fp32 [T, k], ids [T, k])."""

    def __init__(self, hidden_size: int, num_experts: int, top_k: int, renormalize: bool,
                 scoring_func: str = "softmax", n_group: int = 1, topk_group: int = 1,
                 routed_scaling_factor: float = 1.0, round_weights: bool = False):
        super().__init__()
        # Qwen's routers round the weights to the model dtype (Mixtral's and DeepSeek's keep
        # fp32); in bf16 that rounding shows in the tokens, so it is copied.
        self.round_weights = round_weights
        if scoring_func not in ("softmax", "sigmoid"):
            raise ValueError(f"scoring_func={scoring_func!r}; onenode routes with softmax or "
                             f"sigmoid scores")
        self.top_k, self.renormalize, self.scoring_func = top_k, renormalize, scoring_func
        self.n_group, self.topk_group, self.scaling = n_group, topk_group, routed_scaling_factor
        self.weight = nn.Parameter(torch.empty(num_experts, hidden_size), requires_grad=False)
        self.e_score_correction_bias = nn.Parameter(
            torch.empty(num_experts, dtype=torch.float32), requires_grad=False) \
            if scoring_func == "sigmoid" else None

    def forward(self, x: torch.Tensor):
        if self.scoring_func == "softmax":
            weights, ids = softmax_topk(F.linear(x, self.weight), self.top_k, self.renormalize)
            return (weights.to(x.dtype) if self.round_weights else weights), ids
        # DeepSeek scores in fp32 whatever the model dtype: near-ties flip in bf16.
        logits = F.linear(x.float(), self.weight.float())
        return grouped_topk(logits, self.top_k, self.renormalize, self.e_score_correction_bias,
                            self.n_group, self.topk_group, self.scaling)
