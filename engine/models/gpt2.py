"""GPT-2: learned positions, pre-LayerNorm blocks, fused c_attn stored as Conv1D ([in, out]),
gelu_new MLP, LM head tied to the token embedding."""

from typing import ClassVar

import torch
from torch import nn

from engine.layers.activation import act_fn
from engine.layers.attention import PagedAttention
from engine.layers.embedding import ParallelLMHead, VocabParallelEmbedding
from engine.layers.linear import ColumnParallelLinear, Part, RowParallelLinear
from engine.model_config import ModelConfig
from engine.parallel.parallel_state import tp


class GPT2Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h, size, d = cfg.hidden_size, tp().size, cfg.head_dim
        self.ln_1 = nn.LayerNorm(h, eps=cfg.norm_eps)
        self.c_attn = ColumnParallelLinear(h, [Part(cfg.num_heads, d)] * 3, bias=True,
                                           transposed=True)
        self.c_proj = RowParallelLinear(h, h, bias=True, transposed=True)
        self.heads, self.d = cfg.num_heads // size, d
        self.attn = PagedAttention(self.heads, self.heads, d, d ** -0.5)
        self.ln_2 = nn.LayerNorm(h, eps=cfg.norm_eps)
        inner = Part(size, cfg.intermediate_size // size)
        self.c_fc = ColumnParallelLinear(h, [inner], bias=True, transposed=True)
        self.mlp_proj = RowParallelLinear(cfg.intermediate_size, h, bias=True, transposed=True)
        self.act = act_fn(cfg.hidden_act)

    def forward(self, hidden, meta):
        q, k, v = self.c_attn(self.ln_1(hidden)).chunk(3, dim=-1)
        shape = (-1, self.heads, self.d)
        hidden = hidden + self.c_proj(self.attn(q.reshape(shape), k.reshape(shape),
                                                v.reshape(shape), meta))
        return hidden + self.mlp_proj(self.act(self.c_fc(self.ln_2(hidden))))


class GPT2LMHeadModel(nn.Module):
    checkpoint_prefixes = ("transformer.",)
    # HF nests c_attn/c_proj under attn and mlp; c_attn holds q, k, v in one tensor.
    packed_modules_mapping: ClassVar[dict] = {"attn.c_attn": ("c_attn", None), "attn.c_proj": ("c_proj", None),
                              "mlp.c_fc": ("c_fc", None), "mlp.c_proj": ("mlp_proj", None)}
    tied_weights: ClassVar[dict] = {"lm_head.weight": "wte.weight"}

    def __init__(self, cfg: ModelConfig, layer_range, is_first: bool, is_last: bool):
        super().__init__()
        self.cfg, self.is_first, self.is_last = cfg, is_first, is_last
        if is_first:
            self.wte = VocabParallelEmbedding(cfg.vocab_size, cfg.hidden_size)
            self.wpe = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.h = nn.ModuleDict({str(i): GPT2Block(cfg) for i in range(*layer_range)})
        if is_last:
            self.ln_f = nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps)
            self.lm_head = ParallelLMHead(cfg.vocab_size, cfg.hidden_size)
            if is_first:
                self.lm_head.weight = self.wte.weight

    def forward(self, input_ids, positions, meta, intermediate=None):
        if self.is_first:
            hidden = self.wte(input_ids) + self.wpe(positions)
        else:
            hidden = intermediate["hidden"]
        for block in self.h.values():
            hidden = block(hidden, meta)
        return self.ln_f(hidden) if self.is_last else {"hidden": hidden}

    def intermediate_spec(self, num_tokens: int) -> dict:
        return {"hidden": ((num_tokens, self.cfg.hidden_size), next(self.parameters()).dtype)}

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head.logits(hidden)

    def attention_layers(self) -> list[PagedAttention]:
        return [block.attn for block in self.h.values()]
