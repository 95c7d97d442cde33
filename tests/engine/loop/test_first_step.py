"""A rebuild counts only after one real step went through every stage: the probe on a real tiny
engine, and a rebuild whose first step fails (a broken stage link) is a failed attempt."""

import pytest

from engine.loop.rebuilder import EngineRebuilder
from engine.loop.first_step import first_step
from engine.loop.llm_engine import LLMEngine
from onenode.errors import EngineDeadError
from tests.engine.entrypoints.conftest import engine_config


def test_first_step_runs_one_request_to_the_end(tiny_llama):
    engine = LLMEngine(engine_config(tiny_llama))
    try:
        first_step(engine)
        assert not engine.has_unfinished_requests()
        assert engine.stats()["generation_tokens_total"] == 1  # it really sampled a token
    finally:
        engine.shutdown()


def test_a_rebuild_whose_first_step_fails_is_refused_and_shut_down(tiny_llama, monkeypatch):
    built = []
    real_init = LLMEngine.__init__

    def init(self, config):
        real_init(self, config)
        built.append(self)

    def broken_link(self):
        raise EngineDeadError("pp_recv from stage 0 timed out")

    monkeypatch.setattr(LLMEngine, "__init__", init)
    monkeypatch.setattr(LLMEngine, "step", broken_link)
    with pytest.raises(EngineDeadError, match="pp_recv"):
        EngineRebuilder(engine_config(tiny_llama), "uni").build()
    assert built and built[0].executor is None  # its workers were stopped


def test_a_stuck_first_step_has_its_workers_killed_at_the_deadline():
    import threading

    class Stuck:
        model_config = type("M", (), {"eos_token_ids": (2,)})

        def __init__(self):
            self.released, self.added, self.reason = threading.Event(), [], None

        def add_request(self, rid, prompt, params):
            self.added.append((rid, prompt, params.max_tokens))

        def has_unfinished_requests(self):
            return True

        def step(self):
            if not self.released.wait(10):
                raise AssertionError("never interrupted")
            raise EngineDeadError(self.reason)

        def interrupt(self, reason):
            self.reason = reason
            self.released.set()
            return True

    engine = Stuck()
    with pytest.raises(EngineDeadError, match="did not pass every stage within 0s"):
        first_step(engine, timeout_s=0.2)
    assert engine.added == [("onenode-first-step", [2], 1)]
