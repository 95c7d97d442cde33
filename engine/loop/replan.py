"""Re-planning onto the nodes that remain (pure): when a node has been gone longer than
--replan-after, the served engine is rebuilt with fewer pipeline stages instead of waiting for
the node forever, and grows back to the configured layout once the node returns.

The layout comes from the planner's own rule (engine/planner/strategy.py: TP inside a node, PP
across nodes) applied to the nodes that can still hold a stage; whether the weights and a
max_model_len request's KV cache fit is decided by the rebuilt engine itself, with the very
formula `onenode plan` uses (engine/core/kv_blocks.py), and its refusal names what is missing.
"""

import dataclasses

from engine.config import EngineConfig
from engine.model_config import ModelConfig
from engine.parallel.placement import NodeDevices, insufficient_message, place_ranks_on_nodes
from engine.planner.strategy import layout_for_gpus
from onenode.errors import ResourceError


def layout_text(config: EngineConfig) -> str:
    return f"TP={config.tensor_parallel_size} x PP={config.pipeline_parallel_size}"


def fits_now(config: EngineConfig, nodes: list[NodeDevices], kind: str) -> bool:
    """Could the layout be placed on these nodes if the engine now serving let go of its
    devices? (It holds some of them, so their totals count, not what is free.)"""
    whole = [NodeDevices(n.ip, n.total, n.total) for n in nodes]
    try:
        place_ranks_on_nodes(config.tensor_parallel_size, config.pipeline_parallel_size, whole,
                             None, kind)
    except ResourceError:
        return False
    return True


def replanned(full: EngineConfig, model: ModelConfig, nodes: list[NodeDevices],
              kind: str) -> EngineConfig:
    """The configured engine with fewer pipeline stages, one per node that can still hold a
    whole TP group; ResourceError naming what is missing when not even one stage fits."""
    tp, pp = full.tensor_parallel_size, full.pipeline_parallel_size
    stage_nodes = sum(n.free // tp for n in nodes)
    layout = layout_for_gpus(model, min(stage_nodes, pp - 1) * tp, tp) if stage_nodes else None
    if layout is None or layout.tp != tp or layout.pp < 1:
        raise ResourceError(f"no smaller layout fits the nodes that remain: "
                            f"{insufficient_message(tp, pp, nodes, kind)}")
    return dataclasses.replace(full, pipeline_parallel_size=layout.pp)
