"""What one GPU holds besides the KV cache: weights, activation peak, non-torch memory (pure).

The engine measures these on the real device (worker/model_runner.py profiles a forward pass);
`onenode plan` estimates them from the model's shape with the formulas below, then both feed the
same `kv_blocks.gpu_available_bytes`.

Weights (per GPU, on the busiest pipeline stage):
    sum of the stage's layers' params per rank                 (engine/model_params.py: attention
                                                                 and MLP sharded by TP, K/V
                                                                 replicated when TP > KV heads;
                                                                 MoE: all experts resident, sliced
                                                                 by TP or whole under EP)
  + vocab x hidden / tp            on the first stage           (vocab-parallel embedding)
  + vocab x hidden / tp            on the last stage            (LM head; shared with the
                                                                 embedding when tied and pp == 1)
  + positions x hidden             on the first stage           (GPT-2/OPT learned positions)
  all x dtype bytes.

Activation reserve (peak of one profiling step of T = max_num_batched_tokens tokens):
    T x dtype_bytes x (4 x hidden + 3 x intermediate / tp)     (MoE: intermediate = the top-k
                                                                 and shared experts' widths)
  + min(T, max_num_seqs) x vocab / tp x 4
  The first term is the residual stream, normed input, attention output and one temporary
  (4 x hidden) next to the MLP's gate/up outputs and their activated product (3 x intermediate
  per TP shard), which is the peak inside a layer; the second is the fp32 logits of the sampled
  rows on the last stage.

Non-torch reserve: NON_TORCH_BYTES per GPU (CUDA context, cuBLAS workspace, NCCL buffers), the
order of what vLLM's profiler reports as "non-torch memory" on one GPU; NCCL_BYTES more when the
GPU talks to others (TP or PP > 1).
"""

from engine import model_params
from engine.core.kv_blocks import GiB
from engine.model_config import ModelConfig
from engine.parallel.pp_partition import pp_layer_partition

NON_TORCH_BYTES = int(0.5 * GiB)
NCCL_BYTES = int(0.25 * GiB)
DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048
LOGITS_BYTES = 4  # logits are computed in fp32


def default_max_num_batched_tokens(max_model_len: int) -> int:
    """The engine's default chunk of tokens per step (engine/loop/engine_setup.py)."""
    return max(DEFAULT_MAX_NUM_BATCHED_TOKENS, min(max_model_len, 8192))


def planned_dtype(requested: str, checkpoint_dtype: str, device: str) -> str:
    """Mirror of the engine's dtype rule: 'auto' keeps the checkpoint's dtype, except fp32
    checkpoints on CUDA run in bf16 (as in vLLM); an explicit dtype always wins."""
    if requested != "auto":
        return requested
    if device == "cuda" and checkpoint_dtype in ("float32", "float", "fp32"):
        return "bfloat16"
    return checkpoint_dtype


def layer_params_per_rank(model: ModelConfig, tp: int, layer: int = 0, ep: int = 1) -> int:
    """Parameters of decoder layer `layer` on one rank (engine/model_params.py: MoE and MLA
    included; norms replicated)."""
    return model_params.layer_params(model, layer, tp, ep)


def stage_params_per_rank(model: ModelConfig, tp: int, partition: list[int], stage: int,
                          ep: int = 1, active: bool = False) -> int:
    """Parameters one TP rank of `stage` holds (`active`: reads per token, on average)."""
    h, v = model.hidden_size, model.vocab_size
    first, last = stage == 0, stage == len(partition) - 1
    start = sum(partition[:stage])
    params = sum(model_params.layer_params(model, i, tp, ep, active)
                 for i in range(start, start + partition[stage]))
    if first:
        params += v * h // tp
        if model.family in ("gpt2", "opt"):
            params += model.max_position_embeddings * h
    if last:
        params += h  # final norm
        if not (model.tie_word_embeddings and first):
            params += v * h // tp
    return params


def weights_bytes_per_gpu(model: ModelConfig, dtype_bytes: int, tp: int = 1, pp: int = 1,
                          partition: list[int] | None = None, ep: int = 1) -> int:
    """Weight bytes on the busiest GPU (the stage holding the most parameters); every expert is
    resident, so an MoE model weighs its total parameters."""
    parts = partition or pp_layer_partition(model.num_layers, pp)
    return max(stage_params_per_rank(model, tp, parts, s, ep)
               for s in range(len(parts))) * dtype_bytes


def active_bytes_per_gpu(model: ModelConfig, dtype_bytes: int, tp: int, partition: list[int],
                         ep: int = 1) -> int:
    """Weight bytes one decode token reads on the busiest GPU (top-k experts only): what
    single-stream decode speed is bound by, per pipeline stage."""
    return max(stage_params_per_rank(model, tp, partition, s, ep, active=True)
               for s in range(len(partition))) * dtype_bytes


def peak_intermediate(model: ModelConfig) -> int:
    """Widest MLP activation per token before TP: a dense MLP's, or an MoE block's top-k routed
    experts plus its shared experts (every token runs k experts)."""
    dense = model.intermediate_size if any(
        not model.is_moe_layer(i) for i in range(model.num_layers)) else 0
    if not model.is_moe:
        return dense
    moe = ((model.num_experts_per_tok + model.n_shared_experts) * model.moe_intermediate_size
           + model.shared_expert_intermediate_size)
    return max(dense, moe)


def activation_bytes(model: ModelConfig, num_tokens: int, dtype_bytes: int, tp: int = 1,
                     max_num_seqs: int = 256) -> int:
    """Estimated activation peak of one step of `num_tokens` tokens (formula in the header)."""
    hidden = num_tokens * dtype_bytes * (4 * model.hidden_size +
                                         3 * peak_intermediate(model) // tp)
    logits = min(num_tokens, max_num_seqs) * (model.vocab_size // tp) * LOGITS_BYTES
    return hidden + logits


def non_torch_bytes(world_size: int) -> int:
    return NON_TORCH_BYTES + (NCCL_BYTES if world_size > 1 else 0)
