"""`onenode plan` as pure functions: strategy, memory per GPU, KV blocks, and what a target needs.

Every number comes from the functions the engine itself uses to size its KV cache
(kv_blocks.bytes_per_block / num_kv_blocks / gpu_available_bytes / cpu_available_bytes), so the
`# GPU blocks` / `# CPU blocks` a plan predicts is the same formula the engine logs; only the
weights, activation and non-torch terms are estimates here (engine/planner/memory.py) where the
engine measures them.
"""

import math
from dataclasses import asdict, dataclass, field

from engine.config import EngineConfig
from engine.core import kv_blocks
from engine.model_config import ModelConfig
from engine.parallel.pp_partition import pp_layer_partition
from engine.planner import memory
from engine.planner.moe_advice import moe_notes
from engine.planner.shortfall import shortfall
from engine.planner.replicas import LayoutOption, dp_options, replicas_that_fit
from engine.planner.strategy import (
    ClusterShape,
    Layout,
    choose_layout,
    explain,
    layout_for_gpus,
    tp_divides,
)
from onenode.errors import ConfigError

MAX_EXTRA_NODES = 64  # how far the target advice searches


@dataclass(frozen=True, slots=True)
class PlanRequest:
    model: ModelConfig
    model_name: str
    cluster: ClusterShape
    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    dtype: str = "auto"
    block_size: int = 16
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None
    kv_cache_space_gib: float | None = None
    target_tokens: int | None = None
    target_concurrency: float | None = None

    def engine_config(self, layout: Layout = Layout(1, 1, 1)) -> EngineConfig:
        """The EngineConfig `onenode serve` would get; validates the knobs the same way."""
        return EngineConfig(model=self.model_name, tensor_parallel_size=layout.tp,
                            pipeline_parallel_size=layout.pp, dtype=self.dtype,
                            max_model_len=self.max_model_len, block_size=self.block_size,
                            gpu_memory_utilization=self.gpu_memory_utilization,
                            kv_cache_space_gib=self.kv_cache_space_gib,
                            max_num_seqs=self.max_num_seqs,
                            max_num_batched_tokens=self.max_num_batched_tokens)


@dataclass(frozen=True, slots=True)
class Capacity:
    """What one layout gives on a GPU of the requested size."""
    layout: Layout
    partition: list[int]
    weights_bytes: int
    activation_bytes: int
    non_torch_bytes: int
    available_bytes: float
    block_bytes: int
    num_blocks: int
    max_tokens: int
    max_concurrency: float
    fits: bool
    active_bytes: int = 0  # weights one decode token reads on this GPU (top-k experts)


@dataclass(frozen=True, slots=True)
class Plan:
    strategy: str
    tensor_parallel_size: int
    pipeline_parallel_size: int
    nodes_used: int
    gpus_used: int  # data_parallel_size x tensor_parallel_size x pipeline_parallel_size
    pp_layer_partition: list[int]
    dtype: str
    max_model_len: int
    max_num_batched_tokens: int
    block_size: int
    weights_bytes_per_gpu: int
    activation_bytes: int
    non_torch_bytes: int
    kv_cache_bytes_per_gpu: float
    block_bytes: int
    num_gpu_blocks: int
    max_tokens: int
    max_concurrency: float
    num_cpu_blocks: int
    fits: bool
    reason: str
    advice: list[str] = field(default_factory=list)
    expert_parallel_size: int = 1
    num_params: int = 0
    num_active_params: int = 0
    active_bytes_per_gpu: int = 0
    notes: list[str] = field(default_factory=list)  # MoE and checkpoint reasoning
    data_parallel_size: int = 1  # replicas of TP x PP; max_concurrency above is per replica
    options: list[str] = field(default_factory=list)  # DP vs one replica over every device

    def to_dict(self) -> dict:
        return asdict(self)


def cpu_kv_blocks(model: ModelConfig, block_size: int, dtype_bytes: int, tp: int, pp: int,
                  partition: list[int], kv_cache_space_gib: float | None) -> int:
    """The engine's `# CPU blocks: N` for these settings (the very call its model runner makes)."""
    return kv_blocks.num_kv_blocks(
        kv_blocks.cpu_available_bytes(kv_cache_space_gib),
        kv_blocks.bytes_per_block(model, block_size, dtype_bytes, tp, pp, partition))


def capacity(req: PlanRequest, layout: Layout, max_model_len: int, batched: int) -> Capacity:
    """Weights, activation, non-torch and KV blocks per GPU for one layout."""
    model, tp, pp = req.model, layout.tp, layout.pp
    dtype_bytes = kv_blocks.DTYPE_BYTES[memory.planned_dtype(req.dtype, model.torch_dtype, "cuda")]
    partition = pp_layer_partition(model.num_layers, pp)
    weights = memory.weights_bytes_per_gpu(model, dtype_bytes, tp, pp, partition, layout.ep)
    act = memory.activation_bytes(model, batched, dtype_bytes, tp, req.max_num_seqs)
    other = memory.non_torch_bytes(layout.world_size)
    avail = kv_blocks.gpu_available_bytes(req.cluster.gpu_memory_bytes,
                                          req.gpu_memory_utilization, weights, act, other)
    block = kv_blocks.bytes_per_block(model, req.block_size, dtype_bytes, tp, pp, partition)
    blocks = kv_blocks.num_kv_blocks(avail, block)
    fits = blocks >= max(1, math.ceil(max_model_len / req.block_size))
    return Capacity(layout, partition, weights, act, other, avail, block, blocks,
                    blocks * req.block_size,
                    kv_blocks.max_concurrency(blocks, req.block_size, max_model_len), fits,
                    memory.active_bytes_per_gpu(model, dtype_bytes, tp, partition, layout.ep))


def make_plan(req: PlanRequest) -> Plan:
    """Choose the layout and predict what the engine will report for it."""
    check_request(req)
    engine_cfg = req.engine_config()
    max_len = engine_cfg.resolved_max_model_len(req.model)
    batched = req.max_num_batched_tokens or memory.default_max_num_batched_tokens(max_len)
    layout, fits = choose_layout(req.model, req.cluster,
                                 lambda lay: capacity(req, lay, max_len, batched).fits)
    cap = capacity(req, layout, max_len, batched)

    def capacity_of(lay: Layout) -> Capacity:
        return capacity(req, lay, max_len, batched)

    dp, options = data_parallel_advice(req, cap, max_len, batched) if fits else (1, [])

    gpu_dtype = memory.planned_dtype(req.dtype, req.model.torch_dtype, "cuda")
    cpu_dtype = memory.planned_dtype(req.dtype, req.model.torch_dtype, "cpu")
    cpu_blocks = cpu_kv_blocks(req.model, req.block_size, kv_blocks.DTYPE_BYTES[cpu_dtype],
                               layout.tp, layout.pp, cap.partition, req.kv_cache_space_gib)
    return Plan(
        strategy=layout.strategy, tensor_parallel_size=layout.tp,
        pipeline_parallel_size=layout.pp, nodes_used=_nodes_used(req.cluster, layout, dp),
        gpus_used=dp * layout.world_size, data_parallel_size=dp, options=options,
        pp_layer_partition=cap.partition, dtype=gpu_dtype, max_model_len=max_len,
        max_num_batched_tokens=batched, block_size=req.block_size,
        weights_bytes_per_gpu=cap.weights_bytes, activation_bytes=cap.activation_bytes,
        non_torch_bytes=cap.non_torch_bytes, kv_cache_bytes_per_gpu=max(0.0, cap.available_bytes),
        block_bytes=cap.block_bytes, num_gpu_blocks=cap.num_blocks, max_tokens=cap.max_tokens,
        max_concurrency=cap.max_concurrency, num_cpu_blocks=cpu_blocks, fits=fits,
        reason=explain(req.model, req.cluster, layout, fits),
        advice=([] if fits else shortfall(req, cap, max_len, capacity_of, MAX_EXTRA_NODES))
        + target_advice(req, cap, max_len, batched),
        expert_parallel_size=layout.ep, num_params=req.model.num_params,
        num_active_params=req.model.num_active_params, active_bytes_per_gpu=cap.active_bytes,
        notes=moe_notes(req.model, req.cluster, cap, capacity_of,
                        kv_blocks.DTYPE_BYTES[gpu_dtype]))


def data_parallel_advice(req: PlanRequest, cap: Capacity, max_len: int,
                         batched: int) -> tuple[int, list[str]]:
    """Replicas of the chosen layout on the cluster's spare devices (1 when none fit), and the
    lines comparing that with one replica stretched over every device."""
    dp = replicas_that_fit(cap.layout, req.cluster)
    if dp <= 1:
        return 1, []
    replica = LayoutOption(dp, cap.layout, dp * cap.max_concurrency)
    whole_layout = layout_for_gpus(req.model, dp * cap.layout.world_size,
                                   req.cluster.gpus_per_node)
    whole = None
    if whole_layout is not None:
        whole_cap = capacity(req, whole_layout, max_len, batched)
        whole = LayoutOption(1, whole_layout, whole_cap.max_concurrency)
    return dp, dp_options(replica, whole)


def _nodes_used(cluster: ClusterShape, layout: Layout, dp: int) -> int:
    if layout.world_size <= cluster.gpus_per_node:
        per_node = cluster.gpus_per_node // layout.world_size
        return -(-dp // per_node)
    return dp * layout.nodes


def _meets(req: PlanRequest, cap: Capacity) -> bool:
    if not cap.fits:
        return False
    if req.target_tokens is not None and cap.max_tokens < req.target_tokens:
        return False
    return req.target_concurrency is None or cap.max_concurrency >= req.target_concurrency


def target_advice(req: PlanRequest, current: Capacity, max_len: int, batched: int) -> list[str]:
    """How many more GPUs (of this cluster, then extra nodes of the same shape) reach the
    requested --target-tokens / --target-concurrency."""
    if req.target_tokens is None and req.target_concurrency is None:
        return []
    wanted = _target_text(req)
    if _meets(req, current):
        return [f"{wanted}: reached with the planned layout ({current.max_tokens} tokens, "
                f"{current.max_concurrency:.2f}x concurrency)."]
    g, used = req.cluster.gpus_per_node, current.layout.world_size
    for gpus in _growth(req, used):
        layout = layout_for_gpus(req.model, gpus, g)
        if layout is None:
            continue
        cap = capacity(req, layout, max_len, batched)
        if _meets(req, cap):
            return [_advice_line(req, wanted, cap, used)]
    return [f"{wanted}: not reachable with up to {MAX_EXTRA_NODES} more nodes of this shape; "
            f"use GPUs with more memory or lower --max-model-len."]


def _growth(req: PlanRequest, used: int) -> list[int]:
    """GPU counts to try, smallest first: TP sizes that divide the heads inside one node, the
    whole node, then whole nodes (a layout spanning nodes uses all their GPUs)."""
    g = req.cluster.gpus_per_node
    in_node = [n for n in range(used + 1, g + 1) if tp_divides(req.model, n) or n == g]
    first_node = max(used // g + 1, 2)
    return in_node + [n * g for n in range(first_node, req.cluster.nodes + MAX_EXTRA_NODES + 1)]


def _target_text(req: PlanRequest) -> str:
    parts = []
    if req.target_tokens is not None:
        parts.append(f"{req.target_tokens} tokens")
    if req.target_concurrency is not None:
        parts.append(f"{req.target_concurrency:g}x concurrency")
    return "target " + " and ".join(parts)


def _advice_line(req: PlanRequest, wanted: str, cap: Capacity, used: int) -> str:
    lay, have = cap.layout, req.cluster.num_gpus
    more_gpus = lay.world_size - used
    if lay.world_size <= have:
        where = f"use {more_gpus} more GPU(s) of this cluster"
    else:
        extra_nodes = lay.nodes - req.cluster.nodes
        where = (f"add {extra_nodes} node(s) ({lay.world_size - have} more GPUs) of "
                 f"{req.cluster.gpus_per_node} GPUs each")
    return (f"{wanted}: {where} -> TP={lay.tp} x PP={lay.pp} gives {cap.num_blocks} blocks = "
            f"{cap.max_tokens} tokens, {cap.max_concurrency:.2f}x concurrency.")


def check_request(req: PlanRequest) -> None:
    """Argument checks that EngineConfig does not cover; messages name the fix."""
    c = req.cluster
    if c.nodes < 1 or c.gpus_per_node < 1:
        raise ConfigError(f"--nodes {c.nodes} --gpus-per-node {c.gpus_per_node}: both must be >= 1")
    if c.gpu_memory_bytes <= 0:
        raise ConfigError("--gpu-memory must be > 0, e.g. --gpu-memory 80GiB")
