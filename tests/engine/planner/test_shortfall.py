"""A plan that does not fit says how much is missing and what would fit."""

import math

from engine.core.kv_blocks import GiB
from engine.model_config import model_config_from_hf
from engine.planner.known_models import known_model
from engine.planner.plan import PlanRequest, make_plan
from engine.planner.strategy import ClusterShape


def plan_for(name, nodes, gpus, mem_gib, **kw):
    hub_id, cfg = known_model(name)
    return make_plan(PlanRequest(model=model_config_from_hf(cfg), model_name=hub_id,
                                 cluster=ClusterShape(nodes, gpus, mem_gib * GiB), **kw))


def test_missing_is_what_would_make_one_request_fit():
    plan = plan_for("Llama-2-70B", 1, 1, 80)
    kv = math.ceil(4096 / 16) * plan.block_bytes
    per_gpu = (plan.weights_bytes_per_gpu + plan.activation_bytes + plan.non_torch_bytes + kv
               - 0.9 * 80 * GiB)
    assert plan.advice[0].startswith(f"Missing: {per_gpu / GiB:.2f} GiB per GPU")
    bigger = (0.9 * 80 * GiB + per_gpu) / 0.9
    assert f"GPUs of at least {bigger / GiB:.2f} GiB each" in plan.advice[1]
    assert "2 nodes of 1 x 80 GiB (TP=1 x PP=2" in plan.advice[1]


def test_weights_that_fit_suggest_a_shorter_max_model_len(monkeypatch):
    # Past Llama-3's 8192 positions only with the opt-in; the KV cache is what runs out here.
    monkeypatch.setenv("ONENODE_ALLOW_LONG_MAX_MODEL_LEN", "1")
    plan = plan_for("Llama-3-8B", 1, 1, 24, max_model_len=131072)
    assert not plan.fits and plan.max_tokens > 0
    assert f"--max-model-len {plan.max_tokens} on these GPUs" in plan.advice[1]


def test_a_plan_that_fits_has_no_shortfall():
    assert plan_for("Llama-3-8B", 1, 1, 80).advice == []
