import pytest

from engine.model_config import model_config_from_hf
from engine.planner.known_models import KNOWN_MODELS
from engine.planner.strategy import (
    ClusterShape,
    Layout,
    candidate_layouts,
    choose_layout,
    explain,
    layout_for_gpus,
    tp_divides,
)

LLAMA2_70B = model_config_from_hf(KNOWN_MODELS["meta-llama/Llama-2-70b-hf"])  # 64 heads, 8 KV
SMOL = model_config_from_hf(KNOWN_MODELS["HuggingFaceTB/SmolLM2-135M-Instruct"])  # 9 heads, 3 KV


def cluster(nodes, gpus):
    return ClusterShape(nodes, gpus, 80 << 30)


@pytest.mark.parametrize("model, tp, ok", [
    (LLAMA2_70B, 8, True), (LLAMA2_70B, 16, True), (LLAMA2_70B, 3, False),
    (SMOL, 3, True), (SMOL, 9, True), (SMOL, 2, False), (SMOL, 6, False),
])
def test_tp_divides_heads_and_kv_heads(model, tp, ok):
    assert tp_divides(model, tp) is ok


def test_candidates_in_the_seeds_order():
    got = [(c.tp, c.pp, c.nodes) for c in candidate_layouts(LLAMA2_70B, cluster(2, 8))]
    assert got[:4] == [(1, 1, 1), (2, 1, 1), (4, 1, 1), (8, 1, 1)]  # single, then TP in a node
    assert got[-1] == (8, 2, 2)  # then TP = GPUs per node, PP = nodes
    assert all(c[2] == 1 for c in got[:-1])


@pytest.mark.parametrize("model, shape, min_world, want, strategy", [
    (LLAMA2_70B, (2, 8), 1, (1, 1, 1), "single"),
    (LLAMA2_70B, (2, 8), 3, (4, 1, 1), "tp"),       # smallest TP that fits and divides
    (LLAMA2_70B, (2, 8), 9, (8, 2, 2), "tp+pp"),    # the seed: 2 nodes x 8 GPUs
    (LLAMA2_70B, (4, 8), 9, (8, 2, 2), "tp+pp"),    # fewest nodes that fit
    (SMOL, (1, 2), 2, (1, 2, 1), "pp"),             # 9 heads on 2 GPUs: PP instead of TP
    (SMOL, (1, 8), 2, (3, 1, 1), "tp"),             # TP 3 divides 9 heads
    (SMOL, (2, 2), 3, (1, 4, 2), "pp"),             # across nodes, still no TP
])
def test_choose_layout(model, shape, min_world, want, strategy):
    layout, fits = choose_layout(model, cluster(*shape), lambda lay: lay.world_size >= min_world)
    assert fits and (layout.tp, layout.pp, layout.nodes) == want and layout.strategy == strategy


def test_nothing_fits_returns_the_biggest_layout():
    layout, fits = choose_layout(LLAMA2_70B, cluster(2, 8), lambda lay: False)
    assert not fits and layout == Layout(8, 2, 2)


def test_layout_needs_enough_layers():
    tiny = model_config_from_hf({**KNOWN_MODELS["HuggingFaceTB/SmolLM2-135M-Instruct"],
                                 "num_hidden_layers": 2})
    assert layout_for_gpus(tiny, 4, 4) is None  # TP 1 x PP 4 > 2 layers
    assert layout_for_gpus(tiny, 2, 2) == Layout(1, 2, 1)


def test_explanations_name_the_rule():
    c = cluster(2, 8)
    assert "fits on one GPU" in explain(LLAMA2_70B, c, Layout(1, 1, 1), True)
    assert "smallest count that fits" in explain(LLAMA2_70B, c, Layout(4, 1, 1), True)
    assert "GPUs per node (8)" in explain(LLAMA2_70B, c, Layout(8, 2, 2), True)
    assert "cannot split the 9 attention heads" in explain(SMOL, cluster(1, 2),
                                                           Layout(1, 2, 1), True)
    assert "does not fit even on all 16 GPUs" in explain(LLAMA2_70B, c, Layout(8, 2, 2), False)
