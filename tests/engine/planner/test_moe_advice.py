"""The MoE lines of a plan: speed from active parameters, EP across the nodes, FP8 sizing."""

from engine.core.kv_blocks import GiB
from engine.model_config import model_config_from_hf
from engine.planner.known_models import known_model
from engine.planner.plan import PlanRequest, make_plan
from engine.planner.strategy import ClusterShape, Layout, explain_experts, expert_parallel_size


def plan_for(name, nodes, gpus, mem_gib, **kw):
    hub_id, cfg = known_model(name)
    return make_plan(PlanRequest(model=model_config_from_hf(cfg), model_name=hub_id,
                                 cluster=ClusterShape(nodes, gpus, mem_gib * GiB), **kw))


def test_dense_models_get_no_moe_lines():
    assert plan_for("Llama-2-70B", 2, 8, 16).notes == []


def test_ep_only_when_the_experts_split_whole():
    mixtral = model_config_from_hf(known_model("Mixtral-8x22B")[1])
    assert [expert_parallel_size(mixtral, tp) for tp in (1, 2, 4, 8)] == [1, 2, 4, 8]
    six = model_config_from_hf({**known_model("Mixtral-8x22B")[1], "num_local_experts": 6})
    assert expert_parallel_size(six, 4) == 1
    assert "cannot be split whole over 4 GPUs" in explain_experts(six, Layout(4, 1, 1, 1))
    dense = model_config_from_hf(known_model("Llama-2-70B")[1])
    assert expert_parallel_size(dense, 8) == 1


def test_mixtral_on_one_node_runs_ep_inside_it():
    plan = plan_for("Mixtral-8x22B", 1, 8, 80)
    assert plan.fits and plan.expert_parallel_size == plan.tensor_parallel_size > 1
    assert any("--enable-expert-parallel" in c for c in _commands(plan))
    [speed] = plan.notes  # one node: no EP-across-nodes alternative, bf16 checkpoint
    assert "top-2 of 8 experts" in speed


def test_wide_ep_alternative_for_a_gqa_moe_across_nodes():
    plan = plan_for("Qwen3-235B-A22B", 2, 8, 40)
    assert plan.fits and (plan.tensor_parallel_size, plan.pipeline_parallel_size) == (8, 2)
    wide = plan.notes[1]
    assert "--tensor-parallel-size 16 --enable-expert-parallel, EP=16, 8 experts per GPU" in wide
    assert "each GPU caches all 94 layers instead of 47" in wide


def test_wide_ep_impossible_says_why():
    _, cfg = known_model("Qwen3-235B-A22B")
    model = model_config_from_hf({**cfg, "num_experts": 136})  # 8 divides 136, 16 does not
    plan = make_plan(PlanRequest(model=model, model_name="m",
                                 cluster=ClusterShape(2, 8, 40 * GiB)))
    assert plan.expert_parallel_size == 8
    assert "not possible: 64 heads or 136 experts do not split over 16 GPUs" in plan.notes[1]


def _commands(plan):
    from engine.planner.report import commands

    return commands(plan, "m", PlanRequest(model=None, model_name="m",
                                           cluster=ClusterShape(1, 8, 80 * GiB)))
