"""Data-parallel advice: replicas whenever the model fits on fewer devices than the cluster has."""

import pytest

from engine.core.kv_blocks import GiB
from engine.planner.plan import make_plan
from engine.planner.replicas import replicas_that_fit
from engine.planner.report import commands
from engine.planner.strategy import ClusterShape, Layout
from tests.engine.planner.test_plan import request


def test_smollm2_on_three_nodes_is_three_replicas_not_pp3():
    req = request("SmolLM2-135M", 3, 1, 16)
    plan = make_plan(req)
    assert (plan.strategy, plan.data_parallel_size, plan.tensor_parallel_size,
            plan.pipeline_parallel_size) == ("single", 3, 1, 1)
    assert (plan.gpus_used, plan.nodes_used) == (3, 3)
    advised, instead = plan.options
    assert advised.startswith("advised: DP=3 replicas of TP=1 x PP=1 (3 GPUs)")
    assert instead.startswith("instead: one replica, TP=1 x PP=3 (3 GPUs)")
    # Each option prints its predicted concurrency; DP's is the sum over its replicas.
    assert f"{3 * plan.max_concurrency:.2f}x concurrency" in advised
    serve = commands(plan, "SmolLM2", req)[-1]
    assert "--data-parallel-size 3" in serve and "--data-parallel-backend ray" in serve


def test_no_replicas_when_the_layout_takes_the_whole_cluster():
    plan = make_plan(request("Llama-2-70B", 2, 8, 16))  # TP=8 x PP=2 uses every GPU
    assert plan.data_parallel_size == 1 and plan.options == [] and plan.gpus_used == 16


def test_tp_replicas_stay_inside_a_node():
    plan = make_plan(request("Llama-2-7B", 2, 4, 16))  # TP=2 fits; 2 per node x 2 nodes
    assert (plan.tensor_parallel_size, plan.data_parallel_size, plan.gpus_used) == (2, 4, 8)
    assert "--data-parallel-size 4" in " ".join(commands(plan, "m", request("Llama-2-7B", 2, 4,
                                                                           16)))


def test_a_model_that_does_not_fit_gets_no_replicas():
    plan = make_plan(request("Llama-2-70B", 1, 1, 80))
    assert not plan.fits and plan.data_parallel_size == 1


@pytest.mark.parametrize("layout, cluster, want", [
    (Layout(1, 1, 1), ClusterShape(3, 1, GiB), 3),
    (Layout(3, 1, 1), ClusterShape(2, 8, GiB), 4),  # 2 whole TP=3 groups per node, 2 GPUs idle
    (Layout(8, 2, 2), ClusterShape(5, 8, GiB), 2),  # whole nodes per replica
    (Layout(1, 2, 1), ClusterShape(1, 3, GiB), 1),
])
def test_replicas_that_fit(layout, cluster, want):
    assert replicas_that_fit(layout, cluster) == want
