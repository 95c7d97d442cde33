"""KV-cache sizing (pure): bytes per block and how many blocks fit.

One source of truth: the engine logs `# GPU blocks: N` / `# CPU blocks: N` from these functions and
`onenode plan` predicts the same numbers from the same functions. Sliding-window layers count
the whole context like the others: their blocks behind the window are not freed.
"""

import math

from engine.model_config import ModelConfig
from engine.parallel.pp_partition import pp_layer_partition
from onenode.errors import ResourceError

GiB = 1 << 30

DTYPE_BYTES = {"float32": 4, "fp32": 4, "float16": 2, "fp16": 2, "half": 2,
               "bfloat16": 2, "bf16": 2, "float": 4}


def kv_heads_per_rank(num_kv_heads: int, tp: int) -> int:
    """KV heads each TP rank stores: a slice when tp divides them, one replicated head when tp
    exceeds them (Megatron/vLLM GQA rule)."""
    return max(1, num_kv_heads // tp)


def kv_bytes_per_token_layer(model: ModelConfig, tp: int, dtype_bytes: int) -> int:
    """KV-cache bytes one token takes in one layer on one TP rank. MLA (DeepSeek-V2/V3) caches
    the compressed latent plus the shared rope key (kv_lora_rank + qk_rope_head_dim), whole on
    every TP rank as vLLM does; other models cache K and V of this rank's KV heads."""
    if model.kv_lora_rank:
        return (model.kv_lora_rank + model.qk_rope_head_dim) * dtype_bytes
    return 2 * kv_heads_per_rank(model.num_kv_heads, tp) * model.head_dim * dtype_bytes


def bytes_per_block(model: ModelConfig, block_size: int, dtype_bytes: int, tp: int = 1,
                    pp: int = 1, pp_partition: list[int] | None = None) -> int:
    """Bytes one KV block takes on the busiest rank: `block_size` tokens across the layers of
    the largest pipeline stage."""
    layers = max(pp_partition or pp_layer_partition(model.num_layers, pp))
    return kv_bytes_per_token_layer(model, tp, dtype_bytes) * block_size * layers


def num_kv_blocks(available_bytes: float, block_bytes: int) -> int:
    return max(0, math.floor(available_bytes / block_bytes))


def gpu_available_bytes(total_bytes: float, utilization: float, weights_bytes: float,
                        activation_bytes: float, non_torch_bytes: float) -> float:
    """vLLM's budget: utilization x total - weights - peak activation - non-torch memory."""
    return utilization * total_bytes - weights_bytes - activation_bytes - non_torch_bytes


def cpu_available_bytes(kv_cache_space_gib: float | None) -> float:
    return (4.0 if kv_cache_space_gib is None else kv_cache_space_gib) * GiB


def check_blocks(num_blocks: int, block_bytes: int, available_bytes: float, device: str,
                 block_size: int, max_model_len: int) -> None:
    """At least one request of max_model_len must fit; otherwise say how much is missing and which
    knob to turn."""
    need_blocks = math.ceil(max_model_len / block_size)
    if num_blocks >= 1 and num_blocks >= need_blocks:
        return
    missing = need_blocks * block_bytes - max(available_bytes, 0)
    knob = ("raise --gpu-memory-utilization, lower --max-model-len, or add GPUs with "
            "--tensor-parallel-size/--pipeline-parallel-size" if device == "cuda" else
            "raise --kv-cache-space-gib or lower --max-model-len")
    raise ResourceError(
        f"KV cache has {num_blocks} blocks but one {max_model_len}-token request needs "
        f"{need_blocks}: {missing / GiB:.2f} GiB missing; {knob}")


def max_concurrency(num_blocks: int, block_size: int, max_model_len: int) -> float:
    """How many max_model_len requests fit at once (vLLM's 'Maximum concurrency' line)."""
    return num_blocks * block_size / max_model_len
