"""Everything the engine decides once before serving: the model, the parallel layout, the
executor backend, and the KV cache size (logged as `# GPU blocks: N` / `# CPU blocks: N`)."""

from engine.config import EngineConfig
from engine.core import kv_blocks
from engine.executor.select import (
    in_ray_placement_group,
    local_devices,
    make_executor,
    select_backend,
)
from engine.layers.rope_scaling import LENGTH_DEPENDENT
from engine.logger import init_logger
from engine.model_source import resolve_model

log = init_logger("onenode.engine")

DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048


class EngineSetup:
    def __init__(self, config: EngineConfig):
        self.config = config
        self.source = resolve_model(config.model, config.revision)
        self.model_config = self.source.model_config
        self.partition = config.validate_against(self.model_config)
        self.max_model_len = config.resolved_max_model_len(self.model_config)
        self.max_num_batched_tokens = (config.max_num_batched_tokens or
                                       max(DEFAULT_MAX_NUM_BATCHED_TOKENS,
                                           min(self.max_model_len, 8192)))
        self.enable_prefix_caching, self.recompute_at = self._rope_rules()

    def _rope_rules(self) -> tuple[bool, int | None]:
        """(prefix caching, recompute_at) for the model's rope: a length-dependent rope rotates a
        block's keys by the length of the sequence that wrote it, so cached blocks cannot serve a
        sequence of another length; longrope recomputes a sequence's KV when it crosses its
        original context (engine/layers/rotary.py)."""
        rope = self.model_config.rope
        if rope is None or rope.kind not in LENGTH_DEPENDENT:
            return self.config.enable_prefix_caching, None
        if self.config.enable_prefix_caching:
            log.info("prefix caching is off: %s rope rotates keys by the sequence's length, so "
                     "cached blocks do not serve sequences of other lengths", rope.kind)
        return False, rope.original_max_positions if rope.kind == "longrope" else None

    def start_executor(self):
        cfg = self.config
        backend = select_backend(cfg.distributed_executor_backend, cfg.world_size,
                                 in_ray_placement_group(), local_devices(cfg.device))
        log.info("model %s (%s, %d layers), tp=%d pp=%d, backend=%s, pp layers=%s",
                 cfg.model, self.model_config.architecture, self.model_config.num_layers,
                 cfg.tensor_parallel_size, cfg.pipeline_parallel_size, backend, self.partition)
        return make_executor(backend, cfg, self.partition, self.source)

    def size_kv_cache(self, executor) -> int:
        """Every rank reports what fits; the smallest wins (vLLM's rule), then all allocate."""
        reports = executor.collective_rpc("determine_num_blocks", (self.max_num_batched_tokens,))
        num_blocks, block_bytes, available = min(reports, key=lambda r: r[0])
        if self.config.num_gpu_blocks_override:
            num_blocks = self.config.num_gpu_blocks_override
            available = num_blocks * block_bytes
        device = "cuda" if executor.collective_rpc("node_info")[0]["device"].startswith("cuda") \
            else "cpu"
        kv_blocks.check_blocks(num_blocks, block_bytes, available, device,
                               self.config.block_size, self.max_model_len)
        log.info("# %s blocks: %d", "GPU" if device == "cuda" else "CPU", num_blocks)
        log.info("Maximum concurrency for %d tokens per request: %.2fx", self.max_model_len,
                 kv_blocks.max_concurrency(num_blocks, self.config.block_size,
                                           self.max_model_len))
        executor.collective_rpc("init_cache", (num_blocks,))
        return num_blocks
