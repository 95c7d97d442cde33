"""When a model does not fit: how much memory is missing and what would fit (pure).

The numbers are the plan's own (weights, activation, reserve, KV for one max_model_len request
on the busiest GPU), so "missing" is exactly what would make `fits` true for that layout.
"""

import math
from collections.abc import Callable

from engine.planner.strategy import layout_for_gpus
from onenode.units import human_bytes


def shortfall(req, cap, max_len: int, capacity_of: Callable,
              max_extra_nodes: int = 64) -> list[str]:
    """One line on the gap at the biggest layout `cap` (a plan.Capacity), then what fits:
    more nodes of this shape, bigger GPUs, or a shorter --max-model-len."""
    lay, c = cap.layout, req.cluster
    kv_need = math.ceil(max_len / req.block_size) * cap.block_bytes
    per_gpu = kv_need - cap.available_bytes
    usable = req.gpu_memory_utilization * c.gpu_memory_bytes
    total = per_gpu * lay.world_size
    lines = [f"Missing: {human_bytes(per_gpu)} per GPU, about {human_bytes(total)}"
             f" over the {lay.world_size} GPUs at TP={lay.tp} x PP={lay.pp}: weights "
             f"{human_bytes(cap.weights_bytes)} + activation {human_bytes(cap.activation_bytes)}"
             f" + reserve {human_bytes(cap.non_torch_bytes)} + one {max_len}-token request's KV "
             f"{human_bytes(kv_need)} exceed the {human_bytes(usable)} usable per GPU "
             f"(--gpu-memory-utilization {req.gpu_memory_utilization})."]
    fix = []
    bigger = (usable + per_gpu) / req.gpu_memory_utilization
    nodes = _nodes_that_fit(req, capacity_of, max_extra_nodes)
    if nodes:
        n, more = nodes
        fix.append(f"{n} nodes of {c.gpus_per_node} x {human_bytes(c.gpu_memory_bytes)} "
                   f"(TP={more.layout.tp} x PP={more.layout.pp}"
                   + (f", EP={more.layout.ep}" if more.layout.ep > 1 else "")
                   + f": {more.num_blocks} GPU blocks)")
    fix.append(f"GPUs of at least {human_bytes(bigger)} each at this layout")
    if cap.max_tokens > 0:
        fix.append(f"--max-model-len {cap.max_tokens} on these GPUs")
    lines.append("What fits: " + "; or ".join(fix) + ".")
    return lines


def _nodes_that_fit(req, capacity_of: Callable, max_extra_nodes: int):
    """(node count, Capacity) of the fewest whole nodes of this shape that fit, or None."""
    g = req.cluster.gpus_per_node
    for n in range(req.cluster.nodes + 1, req.cluster.nodes + max_extra_nodes + 1):
        layout = layout_for_gpus(req.model, n * g, g)
        if layout is not None:
            cap = capacity_of(layout)
            if cap.fits:
                return n, cap
    return None
