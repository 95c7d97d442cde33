"""OPT: learned positions offset by 2, LayerNorm before (or, for 350m, after) each block,
ReLU MLP, optional project_in/project_out when word_embed_proj_dim != hidden."""

import torch
from torch import nn

from engine.layers.activation import act_fn
from engine.layers.attention import PagedAttention
from engine.layers.embedding import ParallelLMHead, VocabParallelEmbedding
from engine.layers.linear import ColumnParallelLinear, Part, RowParallelLinear
from engine.model_config import ModelConfig
from engine.parallel.parallel_state import tp

POSITION_OFFSET = 2  # OPT's learned position table starts at index 2


def _ln(prefix: str, ln: nn.LayerNorm, fetch) -> None:
    ln.weight.data.copy_(fetch(f"{prefix}.weight", None, None, None))
    ln.bias.data.copy_(fetch(f"{prefix}.bias", None, None, None))


class OPTDecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h, size, d, b = cfg.hidden_size, tp().size, cfg.head_dim, cfg.attention_bias
        self.pre_ln = cfg.do_layer_norm_before
        self.qkv = ColumnParallelLinear(h, [Part(cfg.num_heads, d)] * 3, bias=b)
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

    def load(self, p: str, fetch, bias: bool) -> None:
        kinds = ("weight", "bias") if bias else ("weight",)
        for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
            for kind in kinds:
                self.qkv.load_shard(f"{p}self_attn.{proj}.{kind}", j, fetch)
        for kind in kinds:
            self.out_proj.load_shard(f"{p}self_attn.out_proj.{kind}", fetch)
            self.fc1.load_shard(f"{p}fc1.{kind}", 0, fetch)
            self.fc2.load_shard(f"{p}fc2.{kind}", fetch)
        _ln(f"{p}self_attn_layer_norm", self.self_attn_layer_norm, fetch)
        _ln(f"{p}final_layer_norm", self.final_layer_norm, fetch)


class OPTForCausalLM(nn.Module):
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

    def load_weights(self, reader) -> None:
        names = reader.names()
        p = "model.decoder." if "model.decoder.embed_tokens.weight" in names else "decoder."
        f = reader.fetch
        for i, layer in self.layers.items():
            layer.load(f"{p}layers.{i}.", f, self.cfg.attention_bias)
        if self.is_first:
            self.embed_tokens.load_shard(f"{p}embed_tokens.weight", f)
            self.embed_positions.weight.data.copy_(f(f"{p}embed_positions.weight", None, None,
                                                     None))
            if self.projected:
                self.project_in.weight.data.copy_(f(f"{p}project_in.weight", None, None, None))
        if self.is_last:
            if self.final_layer_norm is not None:
                _ln(f"{p}final_layer_norm", self.final_layer_norm, f)
            if self.projected:
                self.project_out.weight.data.copy_(f(f"{p}project_out.weight", None, None, None))
            if not self.is_first:
                self.lm_head.load_shard(f"{p}embed_tokens.weight", f)
