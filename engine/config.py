"""EngineConfig: every knob of LLM(...) / `onenode serve` / `onenode plan`, validated in one place.

`validate_against(model)` holds the rules that need the model's shape (heads divisible by TP,
layers >= PP); errors name the fix.
"""

import os
from dataclasses import dataclass

from engine.model_config import ModelConfig
from engine.parallel.pp_partition import PARTITION_ENV, pp_layer_partition
from onenode.errors import ConfigError
from onenode.options import check_ranges, option

BACKENDS = ("uni", "mp", "ray")
# Opt-in to a max_model_len past the model's positions (vLLM's name is the alias).
ALLOW_LONG_ENVS = ("ONENODE_ALLOW_LONG_MAX_MODEL_LEN", "VLLM_ALLOW_LONG_MAX_MODEL_LEN")
DP_BACKENDS = ("mp", "ray")
DTYPES = ("auto", "float32", "float16", "bfloat16", "fp32", "fp16", "bf16", "half", "float")


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """One list of engine options: LLM(**kwargs), `onenode serve` and `onenode plan` flags are all
    derived from these fields (onenode/options.py), with vLLM's names and defaults."""
    model: str = option(help="HF model directory, GGUF file/dir or hub id")
    tensor_parallel_size: int = option(1, flags=("--tensor-parallel-size", "-tp"),
                                       range=(1, None))
    pipeline_parallel_size: int = option(1, flags=("--pipeline-parallel-size", "-pp"),
                                         range=(1, None))
    data_parallel_size: int = option(
        1, flags=("--data-parallel-size", "-dp"), range=(1, None),
        help="engine replicas, each with TP x PP devices, behind one API (router: prefix "
             "affinity, then least load; requests on a dead replica resume on a live one)")
    data_parallel_backend: str = option(
        "mp", help="mp: the replicas' workers run on this node | ray: each replica in its own "
                   "Ray placement group, spread over the cluster's nodes")
    # Which replica this engine is (set by the DP engines for each replica, never by users).
    data_parallel_rank: int = option(0, range=(0, None), cli=False)
    distributed_executor_backend: str | None = option(
        None, help="uni | mp | ray (default: uni for one rank, mp when this node has enough "
                   "devices, else ray; ray starts a local Ray instance when there is no cluster)")
    enable_expert_parallel: bool = option(
        False, help="MoE models: split whole experts over the TP ranks of a stage instead of "
                    "slicing every expert")
    dtype: str = option("auto", help="auto | float32 | float16 | bfloat16")
    max_model_len: int | None = option(None, range=(1, None))
    block_size: int = option(16)
    gpu_memory_utilization: float = option(0.9)
    kv_cache_space_gib: float | None = option(
        None, help="KV cache size per rank on CPU (vLLM's VLLM_CPU_KVCACHE_SPACE)")
    max_num_seqs: int = option(256, range=(1, None))
    max_num_batched_tokens: int | None = option(
        None, range=(1, None), help="tokens per engine step (default: max(2048, max_model_len "
                                    "up to 8192); `onenode serve` on CPU: 256)")
    enable_prefix_caching: bool = option(
        True, flags=("--enable-prefix-caching/--no-enable-prefix-caching",))
    seed: int = option(0, range=(0, None))
    device: str = option("auto", help="auto | cpu | cuda")
    pp_layer_partition: str | None = option(None, help="layers per stage, e.g. 10,10,10")
    tokenizer: str | None = option(None, help="tokenizer directory (default: MODEL)")
    revision: str | None = option(
        None, help="hub model revision (branch, tag or commit) to take from the HF cache")
    enforce_eager: bool = option(
        False, help="accepted for vLLM compatibility: onenode always runs eagerly")
    max_logprobs: int = option(20, range=(0, 20),
                               help="most logprobs a request may ask for (vLLM's default 20)")
    generation_config: str = option(
        "auto", help="auto: default sampling values from the model's generation_config.json; "
                     "vllm: onenode's defaults; or a directory holding generation_config.json")
    trust_remote_code: bool = option(
        False, help="refused: onenode never runs code from a model repository")
    # vLLM's knob for tests and debugging: use this many KV blocks instead of what fits.
    num_gpu_blocks_override: int | None = option(None, range=(1, None), hidden=True)

    def __post_init__(self):
        def need(ok: bool, msg: str):
            if not ok:
                raise ConfigError(msg)

        check_ranges(self)
        need(not self.trust_remote_code,
             "trust_remote_code=True is not supported: onenode never runs code from a model "
             "repository; use a supported architecture and leave trust_remote_code off")
        need(self.distributed_executor_backend in (None, *BACKENDS),
             f"distributed_executor_backend={self.distributed_executor_backend!r}; "
             f"use one of {', '.join(BACKENDS)}")
        need(self.data_parallel_backend in DP_BACKENDS,
             f"data_parallel_backend={self.data_parallel_backend!r}; use mp (one node) or ray "
             f"(replicas spread over the cluster's nodes)")
        need(self.dtype in DTYPES, f"dtype={self.dtype!r}; use one of {', '.join(DTYPES)}")
        need(self.block_size in (1, 2, 4, 8, 16, 32, 64, 128),
             f"block_size={self.block_size}; use a power of two from 1 to 128 (default 16)")
        need(0 < self.gpu_memory_utilization <= 1,
             f"gpu_memory_utilization={self.gpu_memory_utilization} must be in (0, 1]")
        need(self.kv_cache_space_gib is None or self.kv_cache_space_gib > 0,
             "kv_cache_space_gib must be > 0")
        need(self.device in ("auto", "cpu", "cuda"), f"device={self.device!r}; use auto, cpu, cuda")
        need(self.distributed_executor_backend != "uni" or self.world_size == 1,
             f"the uni backend runs one process but tensor_parallel_size x "
             f"pipeline_parallel_size = {self.world_size}; use --distributed-executor-backend "
             f"mp (one node) or ray (several nodes)")

    @property
    def world_size(self) -> int:
        """Ranks of one replica (one torch.distributed world)."""
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def num_devices(self) -> int:
        """Devices of all replicas: DP x TP x PP."""
        return self.data_parallel_size * self.world_size

    @property
    def partition_override(self) -> str | None:
        return self.pp_layer_partition or os.environ.get(PARTITION_ENV) or None

    def validate_against(self, model: ModelConfig) -> list[int]:
        """Check TP/PP against the model; returns the PP layer partition."""
        tp, pp = self.tensor_parallel_size, self.pipeline_parallel_size
        if model.num_heads % tp:
            raise ConfigError(
                f"{model.num_heads} attention heads are not divisible by tensor_parallel_size="
                f"{tp}; use --pipeline-parallel-size {tp} instead (or a tensor parallel size "
                f"that divides {model.num_heads})")
        kv = model.num_kv_heads
        if (kv % tp) if tp <= kv else (tp % kv):
            raise ConfigError(
                f"{kv} KV heads cannot be split or replicated over tensor_parallel_size={tp}; "
                f"use a tensor parallel size that divides {kv} or is a multiple of it")
        self._validate_moe(model)
        return pp_layer_partition(model.num_layers, pp, self.partition_override)

    def _validate_moe(self, model: ModelConfig) -> None:
        tp = self.tensor_parallel_size
        if self.enable_expert_parallel and not model.is_moe:
            raise ConfigError(f"enable_expert_parallel=True needs a mixture-of-experts model, "
                              f"but {model.architecture} is dense; drop --enable-expert-parallel")
        if not model.is_moe or tp == 1:
            return
        if self.enable_expert_parallel and model.num_experts % tp:
            raise ConfigError(
                f"{model.num_experts} experts cannot be split evenly over "
                f"tensor_parallel_size={tp} with expert parallelism; use a tensor parallel size "
                f"that divides {model.num_experts}, or drop --enable-expert-parallel")
        sliced = [] if self.enable_expert_parallel else [model.moe_intermediate_size]
        sliced += [model.shared_expert_intermediate_size,
                   model.n_shared_experts * model.moe_intermediate_size]
        bad = next((s for s in sliced if s % tp), None)
        if bad is not None:
            fix = "" if self.enable_expert_parallel else ", or add --enable-expert-parallel"
            raise ConfigError(f"an expert intermediate size of {bad} is not divisible by "
                              f"tensor_parallel_size={tp}; use a tensor parallel size that "
                              f"divides it{fix}")

    def resolved_max_model_len(self, model: ModelConfig) -> int:
        """max_model_len, by default the positions the model supports after its rope scaling;
        more is refused (past them the model's output is not what it was trained for) unless
        the user opts in, and never past a learned position table."""
        limit = model.max_supported_positions
        if self.max_model_len is None or self.max_model_len <= limit:
            return self.max_model_len or limit
        rope = model.rope
        if rope is None:
            raise ConfigError(f"max_model_len={self.max_model_len} exceeds the model's {limit} "
                              f"learned positions; use --max-model-len {limit} or less")
        if not any(os.environ.get(name) == "1" for name in ALLOW_LONG_ENVS):
            scaled = "" if rope.kind == "default" else f" with its {rope.kind} rope scaling"
            raise ConfigError(
                f"max_model_len={self.max_model_len} exceeds the {limit} positions the model "
                f"supports{scaled}; use --max-model-len {limit} or less, or set "
                f"{ALLOW_LONG_ENVS[0]}=1 (or {ALLOW_LONG_ENVS[1]}=1) to go past them")
        return self.max_model_len
