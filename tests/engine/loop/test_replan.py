"""Re-planning onto the nodes that remain (pure) and the rebuilder that does it on a fake Ray:
a node gone longer than --replan-after gives fewer pipeline stages, serving degraded, and the
configured layout comes back when the node does."""

import pytest

from engine.config import EngineConfig
from engine.loop.rebuilder import EngineRebuilder
from engine.loop.replan import fits_now, replanned
from engine.model_config import model_config_from_hf
from engine.parallel.placement import NodeDevices
from engine.planner.known_models import KNOWN_MODELS
from onenode.errors import ResourceError

SMOL = model_config_from_hf(KNOWN_MODELS["HuggingFaceTB/SmolLM2-135M-Instruct"])
PP3 = EngineConfig(model="smol", pipeline_parallel_size=3, distributed_executor_backend="ray")
TWO_LEFT = [NodeDevices("172.30.1.10", 1, 1), NodeDevices("172.30.1.11", 1, 1)]


def test_a_lost_node_of_three_gives_two_stages_with_the_same_tp():
    config = replanned(PP3, SMOL, TWO_LEFT, "CPU")
    assert (config.tensor_parallel_size, config.pipeline_parallel_size) == (1, 2)
    assert config.model == PP3.model and config.max_model_len == PP3.max_model_len


def test_no_node_that_holds_a_stage_says_what_is_missing():
    with pytest.raises(ResourceError, match="no smaller layout fits.*needs 3 CPUs"):
        replanned(PP3, SMOL, [NodeDevices("172.30.1.10", 0, 1)], "CPU")


def test_growing_back_counts_the_devices_the_degraded_engine_holds():
    held = [NodeDevices(n.ip, 0, 1) for n in TWO_LEFT] + [NodeDevices("172.30.1.12", 1, 1)]
    assert fits_now(PP3, held, "CPU")
    assert not fits_now(PP3, held[:2], "CPU")


class FakeRay:
    """Ray as the rebuilder sees it: the nodes alive now; the configured layout needs 3."""

    def __init__(self, monkeypatch, clock):
        import engine.executor.ray as ray_executor
        import engine.executor.ray_inventory as inv
        import engine.loop.first_step as first_step
        import engine.loop.llm_engine as llm_engine

        self.nodes, self.clock, self.built = list(TWO_LEFT), clock, []

        def wait(config, timeout_s):
            if config.pipeline_parallel_size > len(self.nodes):
                clock.now += timeout_s
                raise ResourceError(f"PP={config.pipeline_parallel_size} does not fit")

        monkeypatch.setattr(ray_executor, "wait_for_devices", wait)
        monkeypatch.setattr(inv, "device_kind", lambda device: "CPU")
        monkeypatch.setattr(inv, "inventory", lambda kind: self.nodes)
        monkeypatch.setattr(llm_engine, "LLMEngine", lambda config: self.built.append(config)
                            or config)
        monkeypatch.setattr(first_step, "first_step", lambda engine: None)


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_the_rebuilder_waits_replan_after_then_serves_degraded_then_grows_back(monkeypatch):
    clock = Clock()
    ray = FakeRay(monkeypatch, clock)
    rb = EngineRebuilder(PP3, "ray", replan_after_s=120, model=SMOL, clock=clock)
    rb.wait_for_devices(300)  # waits for the configured layout until replan-after, then re-plans
    assert clock.now == 120 and rb.build().pipeline_parallel_size == 2
    assert rb.degraded == "TP=1 x PP=2 instead of TP=1 x PP=3 (a node is gone)"
    assert not rb.can_grow_back()
    ray.nodes.append(NodeDevices("172.30.1.12", 1, 1))
    clock.now += 1
    assert not rb.can_grow_back()  # asked Ray a second ago: not again yet
    clock.now += 5
    assert rb.can_grow_back()
    rb.grow_back()
    rb.wait_for_devices(300)
    assert rb.build().pipeline_parallel_size == 3 and rb.degraded is None
    assert rb.down_since is None


def test_before_replan_after_an_attempt_fails_and_the_next_one_replans(monkeypatch):
    clock = Clock()
    FakeRay(monkeypatch, clock)
    rb = EngineRebuilder(PP3, "ray", replan_after_s=120, model=SMOL, clock=clock)
    with pytest.raises(ResourceError):
        rb.wait_for_devices(100)  # the attempt's deadline comes first
    rb.wait_for_devices(100)  # 20 s more, then the node counts as gone
    assert clock.now == 120 and rb.config.pipeline_parallel_size == 2


def test_replan_after_zero_waits_for_the_node_forever(monkeypatch):
    clock = Clock()
    FakeRay(monkeypatch, clock)
    rb = EngineRebuilder(PP3, "ray", replan_after_s=0, model=SMOL, clock=clock)
    for _ in range(3):
        with pytest.raises(ResourceError):
            rb.wait_for_devices(300)
    assert rb.config is rb.full and rb.degraded is None
