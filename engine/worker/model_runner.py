"""ModelRunner: one rank's slice of the model, its KV cache, and one forward step.

A rank holds the layers of its pipeline stage, sharded over its TP group. `execute` runs that stage
on the hidden states the worker received (non-first stages) and returns hidden states for the
worker to send on (non-last stages), or, on the last stage, the sampled tokens (first TP rank).
"""

import logging

import torch

from engine.config import EngineConfig
from engine.core import kv_blocks
from engine.core.scheduler_output import ModelRunnerOutput, SchedulerOutput
from engine.layers.linear import pack_cpu_weights
from engine.layers.sampler import sample
from engine.model_source import resolve_model
from engine.models import fp8
from engine.models.registry import build_model, load_weights
from engine.parallel import parallel_state as ps
from engine.parallel.pp_partition import stage_layer_range
from engine.worker import cpu_malloc, memory_profile
from engine.worker.inputs import dummy_inputs, prepare_inputs
from engine.worker.warm_up import warm_up

log = logging.getLogger("onenode.worker")

TORCH_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float": torch.float32,
                "float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
                "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_dtype(requested: str, checkpoint_dtype: str, device: str) -> torch.dtype:
    """'auto' keeps the checkpoint's dtype, except fp32 checkpoints on CUDA run in bf16 (as in
    vLLM); an explicit dtype always wins."""
    if requested != "auto":
        return TORCH_DTYPES[requested]
    dtype = TORCH_DTYPES.get(checkpoint_dtype, torch.float32)
    if device == "cuda" and dtype == torch.float32:
        return torch.bfloat16
    return dtype


class ModelRunner:
    def __init__(self, config: EngineConfig, partition: list[int], device: str):
        self.config = config
        self.partition = partition
        self.device = torch.device(device)
        self.pp_rank, self.pp_size = ps.pp().rank, ps.pp().size
        self.is_first = self.pp_rank == 0
        self.is_last = self.pp_rank == self.pp_size - 1
        self.model = None
        self._memory: list[memory_profile.MemorySnapshot] = []  # CUDA: before/after loading

    def load_model(self, source=None) -> None:
        # The driver resolved the model once; re-resolving a GGUF costs seconds per rank.
        self.source = source or resolve_model(self.config.model, self.config.revision)
        _check_present(self.source)
        self.model_config = self.source.model_config
        self.dtype = resolve_dtype(self.config.dtype, self.model_config.torch_dtype,
                                   self.device.type)
        fp8.check_before_load(self.model_config, self.dtype, self.device, self.config,
                              ps.tp().size, self.partition)
        layer_range = stage_layer_range(self.partition, self.pp_rank)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            self._memory = [memory_profile.snapshot(self.device)]
        self.model = build_model(self.model_config, layer_range, self.is_first, self.is_last,
                                 self.dtype, self.device)
        show = ps.tp().rank == 0 and self.is_first
        load_weights(self.model, self.source, progress=show)
        self.model.eval()
        if self.device.type == "cpu":
            pack_cpu_weights(self.model)
            cpu_malloc.keep_freed_memory()
        else:
            self._memory.append(memory_profile.snapshot(self.device))

    def block_bytes(self) -> int:
        return kv_blocks.bytes_per_block(
            self.model_config, self.config.block_size, self.dtype.itemsize,
            ps.tp().size, self.pp_size, self.partition)

    def available_kv_bytes(self, max_num_batched_tokens: int) -> float:
        if self.device.type != "cuda":
            return kv_blocks.cpu_available_bytes(self.config.kv_cache_space_gib)
        return self._profile_cuda(max_num_batched_tokens)

    def _profile_cuda(self, num_tokens: int) -> float:
        """vLLM's rule over what this engine added (engine/worker/memory_profile.py):
        utilization x total - weights loaded - activation peak - non-torch growth."""
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        before = memory_profile.snapshot(self.device)
        self._forward_dummy(num_tokens)
        after = memory_profile.snapshot(self.device)
        torch.cuda.empty_cache()
        start, loaded = self._memory
        found = memory_profile.profile(start, loaded, before, after,
                                       self.config.gpu_memory_utilization)
        log.info("memory profile: %s", found.summary())
        return found.kv_bytes

    @torch.inference_mode()
    def _forward_dummy(self, num_tokens: int) -> None:
        """Profiling pass without KV cache. Every stage runs locally on zeros (no pipeline
        traffic): memory, not values, is what is measured."""
        inputs = dummy_inputs(num_tokens, min(self.config.max_num_seqs, 8),
                              self.config.block_size, self.device)
        inter = None
        if not self.is_first:
            spec = self.model.intermediate_spec(num_tokens)
            inter = {k: torch.zeros(s, dtype=d, device=self.device) for k, (s, d) in spec.items()}
        out = self.model(inputs.input_ids, inputs.positions, inputs.meta, inter)
        if self.is_last:
            self.model.compute_logits(out[inputs.sample_indices])

    def init_cache(self, num_blocks: int) -> None:
        for attn in self.model.attention_layers():
            attn.allocate_cache(num_blocks, self.config.block_size, self.dtype, self.device)
        warm_up(self.model, self.config.block_size, num_blocks, self.is_first, self.is_last,
                self.device)

    def intermediate_spec(self, num_tokens: int) -> dict:
        """Shapes and dtypes of the hidden states this stage receives for a step."""
        return self.model.intermediate_spec(num_tokens)

    @torch.inference_mode()
    def execute(self, out: SchedulerOutput, intermediate: dict | None = None):
        """This stage's forward: hidden states (a dict) on non-last stages, else the sampled
        tokens on the first TP rank (None on the others)."""
        inputs = prepare_inputs(out, self.config.block_size, self.device)
        hidden = self.model(inputs.input_ids, inputs.positions, inputs.meta, intermediate)
        if not self.is_last:
            return hidden
        if not inputs.sample_seqs:
            return ModelRunnerOutput({}) if ps.tp().rank == 0 else None
        logits = self.model.compute_logits(hidden[inputs.sample_indices])
        if ps.tp().rank != 0:
            return None
        tokens = sample(logits.float(), inputs.sample_seqs)
        return ModelRunnerOutput({s.seq_id: t for s, t in zip(inputs.sample_seqs, tokens)})


def _check_present(source) -> None:
    """The model must be at the same path on every node; say which node lacks it."""
    from onenode.errors import ModelLoadError
    from onenode.net import node_ip

    target = source.path / source.gguf_file if source.gguf_file else source.path / "config.json"
    if not target.exists():
        raise ModelLoadError(f"node {node_ip()} has no model at {target}; put the model at the "
                             f"same path on every node (mount the same HF_HOME) and retry")
