"""What `onenode plan` adds for mixture-of-experts and quantized checkpoints (pure): the speed
that active parameters give, the EP-across-the-nodes alternative with its numbers, and how an
FP8 checkpoint is sized.

Memory counts every expert (all are resident); speed counts only what one token reads.
"""

from collections.abc import Callable

from engine.model_config import ModelConfig
from engine.planner.strategy import ClusterShape, Layout, tp_divides
from onenode.units import human_bytes


def moe_notes(model: ModelConfig, cluster: ClusterShape, cap, capacity_of: Callable,
              dtype_bytes: int) -> list[str]:
    """Reasoning lines for the plan `cap` (a plan.Capacity); none for a dense unquantized model."""
    notes = []
    if model.is_moe:
        notes.append(speed_note(model, cap))
        alt = wide_ep_note(model, cluster, cap, capacity_of)
        if alt:
            notes.append(alt)
    if model.quantization == "fp8":
        notes.append(fp8_note(model, dtype_bytes))
    return notes


def speed_note(model: ModelConfig, cap) -> str:
    active, total = model.num_active_params, model.num_params
    shared = " + shared" if model.n_shared_experts or model.shared_expert_intermediate_size else ""
    lay = cap.layout
    return (f"Speed: a token reads {active / 1e9:.1f}B of the {total / 1e9:.1f}B parameters "
            f"({active / total:.1%}: top-{model.num_experts_per_tok} of {model.num_experts} "
            f"experts{shared}), so decode runs like a {active / 1e9:.1f}B dense model: a batch-1 "
            f"decode step reads about {human_bytes(cap.active_bytes)} of weights per GPU on the "
            f"busiest stage ({lay.pp} stage(s) in sequence), while memory holds all "
            f"{total / 1e9:.1f}B.")


def wide_ep_note(model: ModelConfig, cluster: ClusterShape, cap, capacity_of: Callable) -> str:
    """When the plan spans nodes with PP: the same GPUs as one stage with EP across the nodes,
    and why the plan prefers PP between nodes."""
    lay = cap.layout
    world = lay.world_size
    if lay.pp == 1 or lay.nodes == 1 or not cap.fits:
        return ""
    if not tp_divides(model, world) or model.num_experts % world:
        return (f"EP across the nodes (one stage of {world} GPUs) is not possible: "
                f"{model.num_heads} heads or {model.num_experts} experts do not split over "
                f"{world} GPUs.")
    wide = capacity_of(Layout(world, 1, lay.nodes, world))
    stage_layers = max(cap.partition)
    kv = (f"MLA's latent KV is cached whole on every TP rank, so each GPU caches all "
          f"{model.num_layers} layers instead of {stage_layers}" if model.kv_lora_rank else
          f"each GPU caches all {model.num_layers} layers instead of {stage_layers}")
    result = (f"fits with {wide.num_blocks} GPU blocks" if wide.fits else "does not fit")
    return (f"EP across the nodes instead (one stage: --tensor-parallel-size {world} "
            f"--enable-expert-parallel, EP={world}, {model.num_experts // world} experts per "
            f"GPU) {result} vs {cap.num_blocks} here: {kv}, and every layer's token dispatch "
            f"and attention all-reduce cross the network instead of one activation send per "
            f"stage. Prefer it only for lower batch-1 latency over fast inter-node links (all "
            f"{world} GPUs read each layer at once).")


def fp8_note(model: ModelConfig, dtype_bytes: int) -> str:
    block = "x".join(map(str, model.weight_block_size)) or "per-tensor"
    return (f"Checkpoint: FP8 ({block} block scales). onenode dequantizes it at load (no FP8 "
            f"GEMM path), so weights are planned in the serving dtype: about "
            f"{human_bytes(model.num_params)} on disk become "
            f"{human_bytes(model.num_params * dtype_bytes)} in memory.")
