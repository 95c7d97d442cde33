"""Which TP x PP layout to run a model with, by the seed's rules (pure).

1. The model fits on one GPU -> single GPU (no communication at all).
2. It fits on one node -> tensor parallel over the smallest GPU count that fits and divides the
   attention heads (TP needs fast intra-node links; more GPUs only add all-reduce traffic).
3. Otherwise TP = GPUs per node and PP = nodes (TP stays inside a node, only PP's small
   activations cross the slower inter-node network); the smallest node count that fits is used.
4. When the GPU count cannot divide the heads (SmolLM2's 9 heads on 2 GPUs), PP takes the GPUs
   instead: TP = the largest count that divides both, PP = GPUs / TP (TP = 1 when none does).

"Fits" is decided by the caller (planner.py: one max_model_len request fits in the KV cache left
after weights, activations and non-torch memory), so this module only orders the candidates.
"""

from collections.abc import Callable
from dataclasses import dataclass

from engine.model_config import ModelConfig


@dataclass(frozen=True, slots=True)
class ClusterShape:
    nodes: int
    gpus_per_node: int
    gpu_memory_bytes: float

    @property
    def num_gpus(self) -> int:
        return self.nodes * self.gpus_per_node


@dataclass(frozen=True, slots=True)
class Layout:
    tp: int
    pp: int
    nodes: int  # nodes the layout occupies
    ep: int = 1  # MoE: whole experts split over the TP ranks of a stage (1: experts TP-sliced)

    @property
    def world_size(self) -> int:
        return self.tp * self.pp

    @property
    def strategy(self) -> str:
        if self.world_size == 1:
            return "single"
        if self.pp == 1:
            base = "tp"
        else:
            base = "pp" if self.tp == 1 else "tp+pp"
        return base + ("+ep" if self.ep > 1 else "")


def tp_divides(model: ModelConfig, tp: int) -> bool:
    """The engine's rule (EngineConfig.validate_against): heads split evenly, KV heads split or
    replicated evenly."""
    kv = model.num_kv_heads
    return model.num_heads % tp == 0 and ((kv % tp) if tp <= kv else (tp % kv)) == 0


def largest_tp(model: ModelConfig, gpus: int) -> int:
    """Largest TP size that divides `gpus` and is valid for the model (1 always is)."""
    return max(t for t in range(1, gpus + 1) if gpus % t == 0 and tp_divides(model, t))


def expert_parallel_size(model: ModelConfig, tp: int) -> int:
    """EP for an MoE model: its experts split whole over the stage's TP ranks when they divide
    evenly (`--enable-expert-parallel`, vLLM's EP = TP inside a stage), else 1 (experts sliced
    like a dense MLP)."""
    return tp if model.is_moe and tp > 1 and model.num_experts % tp == 0 else 1


def with_ep(model: ModelConfig, layout: Layout) -> Layout:
    return Layout(layout.tp, layout.pp, layout.nodes, expert_parallel_size(model, layout.tp))


def layout_for_gpus(model: ModelConfig, gpus: int, gpus_per_node: int) -> Layout | None:
    """The seed's layout for a given GPU count: TP inside a node, PP for the rest; None when the
    model has fewer layers than the stages it would need."""
    if gpus <= gpus_per_node:
        tp = largest_tp(model, gpus)
        nodes = 1
    else:
        tp = largest_tp(model, gpus_per_node)
        nodes = -(-gpus // gpus_per_node)
    pp = gpus // tp
    ok = pp <= model.num_layers and tp * pp == gpus
    return with_ep(model, Layout(tp, pp, nodes)) if ok else None


def candidate_layouts(model: ModelConfig, cluster: ClusterShape) -> list[Layout]:
    """Layouts in the order of preference of the rules in the module header."""
    g = cluster.gpus_per_node
    out = [Layout(1, 1, 1)]
    out += [Layout(t, 1, 1) for t in range(2, g + 1) if tp_divides(model, t)]
    for gpus in range(2, g + 1):  # rule 4 inside one node
        layout = layout_for_gpus(model, gpus, g)
        if layout and layout.pp > 1:
            out.append(layout)
    for nodes in range(2, cluster.nodes + 1):
        layout = layout_for_gpus(model, nodes * g, g)
        if layout:
            out.append(layout)
    out = [with_ep(model, lay) for lay in out]
    return [lay for lay in dict.fromkeys(out) if lay.world_size <= cluster.num_gpus]


def choose_layout(model: ModelConfig, cluster: ClusterShape,
                  fits: Callable[[Layout], bool]) -> tuple[Layout, bool]:
    """The first candidate that fits, else the biggest one (with fits=False) so the caller can
    say how far off it is."""
    candidates = candidate_layouts(model, cluster)
    for layout in candidates:
        if fits(layout):
            return layout, True
    return max(candidates, key=lambda lay: (lay.world_size, lay.tp)), False


def explain(model: ModelConfig, cluster: ClusterShape, layout: Layout, fits: bool) -> str:
    """One paragraph: why this layout, and for an MoE model how its experts are placed."""
    text = _explain_layout(model, cluster, layout, fits)
    return f"{text} {explain_experts(model, layout)}" if model.is_moe else text


def explain_experts(model: ModelConfig, layout: Layout) -> str:
    """Why EP (or why not) for an MoE model under this layout."""
    e = model.num_experts
    if layout.tp == 1:
        return (f"Each GPU holds all {e} experts of its layers: nothing to split them over, so "
                f"no expert parallelism.")
    if layout.ep == 1:
        return (f"{e} experts cannot be split whole over {layout.tp} GPUs, so each expert is "
                f"sliced over the TP ranks like a dense MLP (no --enable-expert-parallel).")
    where = "each node" if layout.pp > 1 and layout.nodes > 1 else "the stage"
    return (f"Expert parallelism EP={layout.ep} (--enable-expert-parallel): each of the "
            f"{layout.tp} GPUs of {where} holds {e // layout.ep} whole experts of every MoE "
            f"layer instead of a 1/{layout.tp} slice of all {e}, so each expert's GEMMs keep "
            f"their full width (moe_intermediate_size {model.moe_intermediate_size}) and "
            f"tokens travel to their experts over the stage's fast links; weight memory is "
            f"the same either way (all experts stay resident).")


def _explain_layout(model: ModelConfig, cluster: ClusterShape, layout: Layout, fits: bool) -> str:
    """Why this TP x PP."""
    heads = f"{model.num_heads} attention heads ({model.num_kv_heads} KV heads)"
    if not fits:
        return (f"The model does not fit even on all {cluster.num_gpus} GPUs "
                f"({cluster.nodes} node(s) x {cluster.gpus_per_node}): with TP={layout.tp} x "
                f"PP={layout.pp} one max_model_len request does not fit in the KV cache left "
                f"after the weights (how much is missing, and what fits, follows the table).")
    if layout.world_size == 1:
        spare = cluster.num_gpus - 1
        extra = f" The other {spare} GPU(s) can serve replicas." if spare else ""
        return ("The model fits on one GPU with room for a max_model_len request, so it runs "
                "without any tensor or pipeline parallelism (no communication at all)." + extra)
    if layout.pp == 1:
        return (f"The model does not fit on one GPU but fits on one node: tensor parallelism over "
                f"{layout.tp} GPUs, the smallest count that fits and divides the {heads}; TP "
                f"stays on one node's fast GPU links.")
    if layout.nodes == 1 or layout.tp < min(cluster.gpus_per_node, layout.world_size):
        return (f"{layout.world_size} GPUs cannot split the {heads} evenly, so pipeline "
                f"parallelism takes them instead: TP={layout.tp} x PP={layout.pp} (uneven "
                f"case; PP only needs whole layers per GPU).")
    return (f"The model does not fit on one node: TP = GPUs per node ({layout.tp}) keeps the "
            f"all-reduce traffic on each node's fast links, and PP = {layout.pp} nodes sends "
            f"only activations between nodes over the network; {layout.nodes} of "
            f"{cluster.nodes} node(s) are enough.")
