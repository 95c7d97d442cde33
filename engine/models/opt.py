"""OPT: learned positions offset by 2, LayerNorm before (or, for 350m, after) each block,
ReLU MLP, optional project_in/project_out when word_embed_proj_dim != hidden."""

from typing import ClassVar

import torch
from torch import nn

from engine.layers.activation import act_fn
from engine.layers.attention import PagedAttention
from engine.layers.embedding import ParallelLMHead, VocabParallelEmbedding
from engine.layers.linear import ColumnParallelLinear, Part, RowParallelLinear
from engine.model_config import ModelConfig
from engine.parallel.parallel_state import tp

POSITION_OFFSET = 2  # OPT's learned position table starts at index 2


class OPTDecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h, size, d, b = cfg.hidden_size, tp().size, cfg.head_dim, cfg.attention_bias
        self.pre_ln = cfg.do_layer_norm_before
        self.qkv = ColumnParallelLinear(h, [Part(cfg.num_heads, d)] * 3, bias=b,
                                        shard_ids=("q", "k", "v"))
        self.out_proj = RowParallelLinear(h, h, bias=b)
        self.heads, self.d = cfg.num_heads // size, d
        self.attn = PagedAttention(self.heads, self.heads, d, d ** -0.5)
        self.self_attn_layer_norm = nn.LayerNorm(h)
        self.fc1 = ColumnParallelLinear(h, [Part(size, cfg.intermediate_size // size)], bias=b)
        self.fc2 = RowParallelLinear(cfg.intermediate_size, h, bias=b)
        self.final_layer_norm = nn.LayerNorm(h)
        self.act = act_fn(cfg.hidden_act)

    def forward(self, hidden, meta):
        x = self.self_attn_layer_norm(hidden) if self.pre_ln else hidden
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        shape = (-1, self.heads, self.d)
        hidden = hidden + self.out_proj(self.attn(q.reshape(shape), k.reshape(shape),
                                                  v.reshape(shape), meta))
        if not self.pre_ln:
            hidden = self.self_attn_layer_norm(hidden)
        x = self.final_layer_norm(hidden) if self.pre_ln else hidden
        hidden = hidden + self.fc2(self.act(self.fc1(x)))
        return hidden if self.pre_ln else self.final_layer_norm(hidden)


class OPTForCausalLM(nn.Module):
    checkpoint_prefixes = ("model.decoder.", "decoder.")
    packed_modules_mapping: ClassVar[dict] = {
        "self_attn.q_proj": ("qkv", "q"), "self_attn.k_proj": ("qkv", "k"),
        "self_attn.v_proj": ("qkv", "v"), "self_attn.out_proj": ("out_proj", None),
    }
    tied_weights: ClassVar[dict] = {"lm_head.weight": "embed_tokens.weight"}

    def __init__(self, cfg: ModelConfig, layer_range, is_first: bool, is_last: bool):
        super().__init__()
        self.cfg, self.is_first, self.is_last = cfg, is_first, is_last
        proj = cfg.word_embed_proj_dim or cfg.hidden_size
        self.projected = proj != cfg.hidden_size
        if is_first:
            self.embed_tokens = VocabParallelEmbedding(cfg.vocab_size, proj)
            self.embed_positions = nn.Embedding(cfg.max_position_embeddings + POSITION_OFFSET,
                                                cfg.hidden_size)
            if self.projected:
                self.project_in = nn.Linear(proj, cfg.hidden_size, bias=False)
        self.layers = nn.ModuleDict({str(i): OPTDecoderLayer(cfg) for i in range(*layer_range)})
        if is_last:
            # HF drops the final norm for post-LN OPT (350m).
            self.final_layer_norm = nn.LayerNorm(cfg.hidden_size) if cfg.do_layer_norm_before \
                else None
            if self.projected:
                self.project_out = nn.Linear(cfg.hidden_size, proj, bias=False)
            self.lm_head = ParallelLMHead(cfg.vocab_size, proj)
            if is_first:
                self.lm_head.weight = self.embed_tokens.weight

    def forward(self, input_ids, positions, meta, intermediate=None):
        if self.is_first:
            hidden = self.embed_tokens(input_ids)
            if self.projected:
                hidden = self.project_in(hidden)
            hidden = hidden + self.embed_positions(positions + POSITION_OFFSET)
        else:
            hidden = intermediate["hidden"]
        for layer in self.layers.values():
            hidden = layer(hidden, meta)
        if not self.is_last:
            return {"hidden": hidden}
        if self.final_layer_norm is not None:
            hidden = self.final_layer_norm(hidden)
        return self.project_out(hidden) if self.projected else hidden

    def intermediate_spec(self, num_tokens: int) -> dict:
        return {"hidden": ((num_tokens, self.cfg.hidden_size), next(self.parameters()).dtype)}

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head.logits(hidden)

    def attention_layers(self) -> list[PagedAttention]:
        return [layer.attn for layer in self.layers.values()]
