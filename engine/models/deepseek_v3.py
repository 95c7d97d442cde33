"""DeepSeek-V3 family (DeepSeek-V3/R1, Kimi-K2 shapes): multi-head latent attention (MLA),
RMSNorm, SwiGLU, YaRN rope on the rope part of each head only.

Readable top to bottom; distribution is data, as in llama.py:
- the latent projections (q_a_proj, kv_a_proj_with_mqa) are replicated: each is one `Part` of a
  single unit, which linear.py's rule copies whole to every TP rank. They share one GEMM;
- q_b_proj (or q_proj without a q latent) and kv_b_proj are column-parallel by head, o_proj
  row-parallel: a rank computes its own heads end to end, and the latent KV cache it reads
  (mla_attention.py) is the same on every rank.

Routed experts: layers where `cfg.is_moe_layer(i)` (from first_k_dense_replace on) take the
shared MoE block (engine/layers/moe.py): sigmoid-scored grouped top-k with the correction bias,
routed_scaling_factor and the shared experts, sliced over TP or split whole with EP.
"""

from typing import ClassVar

import torch
from torch import nn

from engine.layers.embedding import ParallelLMHead, VocabParallelEmbedding
from engine.layers.fused_moe import EXPERT_MAPPING
from engine.layers.linear import ColumnParallelLinear, Part, RowParallelLinear
from engine.layers.mla_attention import MLAAttention
from engine.layers.moe import SparseMoeBlock
from engine.layers.norm import RMSNorm
from engine.layers.rope_scaling import softmax_mscale
from engine.layers.rotary import RotaryEmbedding
from engine.model_config import ModelConfig
from engine.models.llama import LlamaMLP
from engine.parallel.parallel_state import tp
from onenode.errors import ModelLoadError

LATENT_NORM_EPS = 1e-6  # HF builds q_a_layernorm and kv_a_layernorm with the default eps
ROPE_TYPES = ("default", "yarn")


def _mlp(cfg: ModelConfig, layer: int) -> nn.Module:
    """The MLP of decoder layer `layer`: routed experts, or dense for the first k layers."""
    return SparseMoeBlock(cfg) if cfg.is_moe_layer(layer) else LlamaMLP(cfg)


def _check(cfg: ModelConfig) -> None:
    rope = (cfg.rope_scaling or {}).get("rope_type") or (cfg.rope_scaling or {}).get("type") \
        or "default"
    if rope not in ROPE_TYPES:
        raise ModelLoadError(f"DeepSeek-V3 with rope type {rope!r} is not supported; "
                             f"supported: {', '.join(ROPE_TYPES)}")
    if cfg.attention_bias:
        raise ModelLoadError("DeepSeek-V3 with attention_bias=true is not supported; "
                             "released checkpoints have none, check config.json")


def _deinterleave(x: torch.Tensor) -> torch.Tensor:
    """DeepSeek's rope pairs dims (0, 1), (2, 3), ...; gathering evens then odds turns that into
    the rotate-half layout. q and k get the same permutation, so their dot products (and the
    cached k_pe) are exactly HF's."""
    return torch.cat((x[..., 0::2], x[..., 1::2]), dim=-1)


class DeepseekV3Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, rotary: RotaryEmbedding):
        super().__init__()
        heads = cfg.num_heads
        self.heads = heads // tp().size
        self.nope, self.rope, self.rank = cfg.qk_nope_head_dim, cfg.qk_rope_head_dim, \
            cfg.kv_lora_rank
        qk = self.nope + self.rope
        q_part = Part(1, cfg.q_lora_rank) if cfg.q_lora_rank else Part(heads, qk)
        self.q_width = q_part.local_rows(tp().size)
        self.qkv_a_proj = ColumnParallelLinear(
            cfg.hidden_size, [q_part, Part(1, self.rank + self.rope)], bias=False,
            shard_ids=("q", "kv_a"))
        self.q_a_layernorm = self.q_b_proj = None
        if cfg.q_lora_rank:
            self.q_a_layernorm = RMSNorm(cfg.q_lora_rank, LATENT_NORM_EPS)
            self.q_b_proj = ColumnParallelLinear(cfg.q_lora_rank, [Part(heads, qk)], bias=False)
        self.kv_a_layernorm = RMSNorm(self.rank, LATENT_NORM_EPS)
        self.kv_b_proj = ColumnParallelLinear(self.rank, [Part(heads, self.nope + cfg.v_head_dim)],
                                              bias=False)
        self.kv_b_proj.packed = False  # read per head by the attention, never run as a GEMM
        self.o_proj = RowParallelLinear(heads * cfg.v_head_dim, cfg.hidden_size, bias=False)
        self.rotary, self.interleave = rotary, cfg.rope_interleave
        scale = qk ** -0.5 * softmax_mscale(rotary.rope)
        self.attn = MLAAttention(self.heads, self.nope, cfg.v_head_dim, self.rank, self.rope,
                                 scale)

    def forward(self, positions, x, meta):
        q, kv = self.qkv_a_proj(x).split([self.q_width, self.rank + self.rope], dim=-1)
        if self.q_b_proj is not None:
            q = self.q_b_proj(self.q_a_layernorm(q.contiguous()))
        q = q.view(-1, self.heads, self.nope + self.rope)
        latent = self.kv_a_layernorm(kv[:, :self.rank].contiguous())
        # The heads' q_pe and the shared k_pe rotate together: one set of elementwise ops.
        pe = torch.cat((q[..., self.nope:], kv[:, None, self.rank:]), dim=1)
        pe = self.rotary(positions, _deinterleave(pe) if self.interleave else pe)
        out = self.attn(q[..., :self.nope], pe[:, :self.heads], latent, pe[:, self.heads],
                        self.kv_b_proj.weight, meta)
        return self.o_proj(out)


class DeepseekV3DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int, rotary: RotaryEmbedding):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.norm_eps)
        self.self_attn = DeepseekV3Attention(cfg, rotary)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.norm_eps)
        self.mlp = _mlp(cfg, layer)

    def forward(self, positions, hidden, residual, meta):
        if residual is None:
            residual, hidden = hidden, self.input_layernorm(hidden)
        else:
            hidden, residual = self.input_layernorm(hidden, residual)
        hidden = self.self_attn(positions, hidden, meta)
        hidden, residual = self.post_attention_layernorm(hidden, residual)
        return self.mlp(hidden), residual


class DeepseekV3ForCausalLM(nn.Module):
    checkpoint_prefixes = ("model.",)
    packed_modules_mapping: ClassVar[dict] = {
        "q_a_proj": ("qkv_a_proj", "q"), "q_proj": ("qkv_a_proj", "q"),
        "kv_a_proj_with_mqa": ("qkv_a_proj", "kv_a"),
        "gate_proj": ("gate_up_proj", "gate"), "up_proj": ("gate_up_proj", "up"),
    }
    expert_modules_mapping = EXPERT_MAPPING

    def __init__(self, cfg: ModelConfig, layer_range: tuple[int, int], is_first: bool,
                 is_last: bool):
        super().__init__()
        _check(cfg)
        self.cfg, self.layer_range = cfg, layer_range
        self.is_first, self.is_last = is_first, is_last
        self.embed_tokens = VocabParallelEmbedding(cfg.vocab_size, cfg.hidden_size) \
            if is_first else None
        rotary = RotaryEmbedding(cfg.qk_rope_head_dim, cfg.max_position_embeddings,
                                     cfg.rope_theta, cfg.rope_scaling)
        self.layers = nn.ModuleDict({str(i): DeepseekV3DecoderLayer(cfg, i, rotary)
                                     for i in range(*layer_range)})
        if is_last:
            self.norm = RMSNorm(cfg.hidden_size, cfg.norm_eps)
            self.lm_head = ParallelLMHead(cfg.vocab_size, cfg.hidden_size)
            if is_first and cfg.tie_word_embeddings:
                self.lm_head.weight = self.embed_tokens.weight
        self.tied_weights = {"lm_head.weight": "embed_tokens.weight"} \
            if cfg.tie_word_embeddings else {}

    def forward(self, input_ids, positions, meta, intermediate=None):
        if self.is_first:
            hidden, residual = self.embed_tokens(input_ids), None
        else:
            hidden, residual = intermediate["hidden"], intermediate["residual"]
        for layer in self.layers.values():
            hidden, residual = layer(positions, hidden, residual, meta)
        if not self.is_last:
            return {"hidden": hidden, "residual": residual}
        hidden, _ = self.norm(hidden, residual)
        return hidden

    def intermediate_spec(self, num_tokens: int) -> dict:
        dtype = next(self.parameters()).dtype
        shape = (num_tokens, self.cfg.hidden_size)
        return {"hidden": (shape, dtype), "residual": (shape, dtype)}

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head.logits(hidden)

    def attention_layers(self) -> list[MLAAttention]:
        return [layer.self_attn.attn for layer in self.layers.values()]
