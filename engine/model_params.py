"""How many parameters a model has, in all and per token, and how many one rank holds (pure).

One count for ModelConfig.num_params (weight memory: every expert is resident),
ModelConfig.num_active_params (speed: what one token reads) and the planner's per-rank weights
(engine/planner/memory.py), so the three cannot drift apart.

Per decoder layer:
  attention   GQA: q, k, v, o projections. MLA (DeepSeek-V2/V3): q_a (or q), kv_a_with_mqa,
              kv_b, o, plus the two latent norms. Under TP, q/k/v/q_b/kv_b are column slices and
              o a row slice; MLA's q_a and kv_a are replicated (as vLLM does), KV heads are
              replicated when TP exceeds them.
  MLP         dense: gate/up/down (2 matrices for GPT-2/OPT), sliced by TP.
              MoE: router (replicated; DeepSeek adds a correction bias per expert), the routed
              experts (all resident; sliced by TP, or whole experts per rank under EP), shared
              experts (DeepSeek's n_shared_experts, Qwen2-MoE's sigmoid-gated one) sliced by TP.
              Active: the top-k routed experts instead of all of them.
  norms       4 x hidden per layer (two norms, with their biases for GPT-2/OPT).
Outside the layers: embedding, LM head (once when tied), learned positions (GPT-2/OPT), final norm.
Active parameters count the embedding and the LM head, as DeepSeek's "37B activated" and
Qwen's "A22B" do.
"""

from engine.core.kv_blocks import kv_heads_per_rank
from engine.model_config import ModelConfig


def attention_params(m: ModelConfig, tp: int = 1) -> int:
    """Attention parameters of one layer on one TP rank."""
    h = m.hidden_size
    if m.kv_lora_rank:
        return _mla_params(m, tp)
    q = m.num_heads * m.head_dim // tp
    kv = kv_heads_per_rank(m.num_kv_heads, tp) * m.head_dim
    qk_norm = 2 * m.head_dim if m.qk_norm else 0  # Qwen3: one RMSNorm weight for q, one for k
    return h * q + 2 * h * kv + q * h + qk_norm


def _mla_params(m: ModelConfig, tp: int) -> int:
    h, heads = m.hidden_size, m.num_heads // tp
    qk_head = m.qk_nope_head_dim + m.qk_rope_head_dim
    if m.q_lora_rank:  # q_a_proj + q_a_layernorm (replicated) + q_b_proj (sliced)
        q = h * m.q_lora_rank + m.q_lora_rank + m.q_lora_rank * heads * qk_head
    else:
        q = h * heads * qk_head
    kv_a = h * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank  # with kv_a_layernorm
    kv_b = m.kv_lora_rank * heads * (m.qk_nope_head_dim + m.v_head_dim)
    o = heads * m.v_head_dim * h
    return q + kv_a + kv_b + o


def _mlp(m: ModelConfig, intermediate: int) -> int:
    """One unsliced MLP: gate/up/down, or fc1/fc2 for GPT-2 and OPT."""
    return (2 if m.family in ("gpt2", "opt") else 3) * m.hidden_size * intermediate


def experts_per_rank(m: ModelConfig, ep: int) -> int:
    """Whole routed experts on the busiest EP rank (the last ranks get one fewer when uneven)."""
    return -(-m.num_experts // ep)


def mlp_params(m: ModelConfig, layer: int, tp: int = 1, ep: int = 1,
               active: bool = False) -> int:
    """MLP (or MoE block) parameters of decoder layer `layer` on one rank. `ep` > 1: routed
    experts are whole on ep ranks instead of sliced over tp; `active`: per token (top-k)."""
    if not m.is_moe_layer(layer):
        return _mlp(m, m.intermediate_size) // tp
    h, e = m.hidden_size, m.num_experts
    router = h * e + (e if m.scoring_func == "sigmoid" else 0)  # DeepSeek's correction bias
    expert = _mlp(m, m.moe_intermediate_size)
    if active:  # per token; on one rank the top-k land on 1/tp of the ranks' experts on average
        routed = m.num_experts_per_tok * expert // tp
    elif ep > 1:
        routed = experts_per_rank(m, ep) * expert
    else:
        routed = e * expert // tp
    shared = m.n_shared_experts * expert // tp
    if m.shared_expert_intermediate_size:  # Qwen2-MoE: one shared expert and its sigmoid gate
        shared += _mlp(m, m.shared_expert_intermediate_size) // tp + h
    return router + routed + shared


def layer_params(m: ModelConfig, layer: int, tp: int = 1, ep: int = 1,
                 active: bool = False) -> int:
    """All parameters of decoder layer `layer` on one rank (norms replicated)."""
    return attention_params(m, tp) + mlp_params(m, layer, tp, ep, active) + 4 * m.hidden_size


def outside_layers_params(m: ModelConfig) -> int:
    """Embedding, LM head (once when tied), learned positions and the final norm."""
    h = m.hidden_size
    embed = m.vocab_size * h * (1 if m.tie_word_embeddings else 2)
    pos = m.max_position_embeddings * h if m.family in ("gpt2", "opt") else 0
    return embed + pos + h


def num_params(m: ModelConfig) -> int:
    """Every parameter the model keeps resident (all experts)."""
    return sum(layer_params(m, i) for i in range(m.num_layers)) + outside_layers_params(m)


def num_active_params(m: ModelConfig) -> int:
    """Parameters one token reads: top-k routed experts, shared experts, attention, embeddings
    (equals num_params for a dense model)."""
    return (sum(layer_params(m, i, active=True) for i in range(m.num_layers))
            + outside_layers_params(m))
