"""What one GPU holds besides the KV cache: weights, activation peak, non-torch memory (pure).

The engine measures these on the real device (worker/model_runner.py profiles a forward pass);
`onenode plan` estimates them from the model's shape with the formulas below, then both feed the
same `kv_blocks.gpu_available_bytes`.

Weights (per GPU, on the busiest pipeline stage):
    layers_of_stage x params_per_layer_per_rank                (attention and MLP sharded by TP;
                                                                 K/V replicated when TP > KV heads)
  + vocab x hidden / tp            on the first stage           (vocab-parallel embedding)
  + vocab x hidden / tp            on the last stage            (LM head; shared with the
                                                                 embedding when tied and pp == 1)
  + positions x hidden             on the first stage           (GPT-2/OPT learned positions)
  all x dtype bytes.

Activation reserve (peak of one profiling step of T = max_num_batched_tokens tokens):
    T x dtype_bytes x (4 x hidden + 3 x intermediate / tp)
  + min(T, max_num_seqs) x vocab / tp x 4
  The first term is the residual stream, normed input, attention output and one temporary
  (4 x hidden) next to the MLP's gate/up outputs and their activated product (3 x intermediate
  per TP shard), which is the peak inside a layer; the second is the fp32 logits of the sampled
  rows on the last stage.

Non-torch reserve: NON_TORCH_BYTES per GPU (CUDA context, cuBLAS workspace, NCCL buffers), the
order of what vLLM's profiler reports as "non-torch memory" on one GPU; NCCL_BYTES more when the
GPU talks to others (TP or PP > 1).
"""

from engine.core.kv_blocks import GiB, kv_heads_per_rank
from engine.model_config import ModelConfig
from engine.parallel.pp_partition import pp_layer_partition

NON_TORCH_BYTES = int(0.5 * GiB)
NCCL_BYTES = int(0.25 * GiB)
DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048
LOGITS_BYTES = 4  # logits are computed in fp32


def default_max_num_batched_tokens(max_model_len: int) -> int:
    """The engine's default chunk of tokens per step (engine/core/engine_setup.py)."""
    return max(DEFAULT_MAX_NUM_BATCHED_TOKENS, min(max_model_len, 8192))


def planned_dtype(requested: str, checkpoint_dtype: str, device: str) -> str:
    """Mirror of the engine's dtype rule: 'auto' keeps the checkpoint's dtype, except fp32
    checkpoints on CUDA run in bf16 (as in vLLM); an explicit dtype always wins."""
    if requested != "auto":
        return requested
    if device == "cuda" and checkpoint_dtype in ("float32", "float", "fp32"):
        return "bfloat16"
    return checkpoint_dtype


def layer_params_per_rank(model: ModelConfig, tp: int) -> int:
    h, hd = model.hidden_size, model.head_dim
    q = model.num_heads * hd // tp
    kv = kv_heads_per_rank(model.num_kv_heads, tp) * hd
    attn = h * q + 2 * h * kv + q * h
    mlp = (3 if model.gated_mlp else 2) * h * model.intermediate_size // tp
    return attn + mlp + 4 * h  # norms (and their biases) are replicated


def stage_params_per_rank(model: ModelConfig, tp: int, partition: list[int], stage: int) -> int:
    """Parameters one TP rank of `stage` holds."""
    h, v = model.hidden_size, model.vocab_size
    first, last = stage == 0, stage == len(partition) - 1
    params = partition[stage] * layer_params_per_rank(model, tp)
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
                          partition: list[int] | None = None) -> int:
    """Weight bytes on the busiest GPU (the stage holding the most parameters)."""
    parts = partition or pp_layer_partition(model.num_layers, pp)
    return max(stage_params_per_rank(model, tp, parts, s) for s in range(len(parts))) * dtype_bytes


def activation_bytes(model: ModelConfig, num_tokens: int, dtype_bytes: int, tp: int = 1,
                     max_num_seqs: int = 256) -> int:
    """Estimated activation peak of one step of `num_tokens` tokens (formula in the header)."""
    hidden = num_tokens * dtype_bytes * (4 * model.hidden_size +
                                         3 * model.intermediate_size // tp)
    logits = min(num_tokens, max_num_seqs) * (model.vocab_size // tp) * LOGITS_BYTES
    return hidden + logits


def non_torch_bytes(world_size: int) -> int:
    return NON_TORCH_BYTES + (NCCL_BYTES if world_size > 1 else 0)
