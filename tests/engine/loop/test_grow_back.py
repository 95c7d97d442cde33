"""A degraded engine grows back at a quiet moment (fake engine and rebuilder): once the missing
node is back, new requests get 503 + Retry-After while the one in flight finishes, then the
configured layout is rebuilt and /health stops saying degraded."""

import asyncio
import threading
import time

from engine.loop.async_engine import AsyncEngine
from engine.loop.recovery import EngineState, RecoveryConfig
from engine.outputs import CompletionOutput, RequestOutput
from onenode.errors import EngineDeadError


class SlowEngine:
    """One request at a time, finished only once `release` is set."""

    tokenizer, max_model_len = None, 64
    model_config = type("ModelConfig", (), {"vocab_size": 16})

    def __init__(self, name):
        self.name, self.requests, self.release = name, [], threading.Event()

    def stats(self):
        return {"num_running": len(self.requests), "num_waiting": 0}

    def has_unfinished_requests(self):
        return bool(self.requests)

    def add_request(self, request_id, prompt, params, prompt_text=None):
        self.requests.append(request_id)

    def abort_request(self, request_id):
        self.requests = [r for r in self.requests if r != request_id]

    def step(self):
        if not self.release.wait(0.01):
            return []
        rid = self.requests.pop(0)
        return [RequestOutput(rid, None, [], [CompletionOutput(0, self.name, [1], "stop")],
                              True)]

    def check_health(self):
        pass

    def shutdown(self):
        pass


class DegradedRebuilder:
    def __init__(self):
        self.degraded, self.back, self.grew = "TP=1 x PP=2 instead of TP=1 x PP=3", False, False

    def can_grow_back(self):
        return self.back

    def grow_back(self):
        self.grew = True

    def wait_for_devices(self, timeout_s):
        pass

    def build(self):
        self.degraded = None
        engine = SlowEngine("full")
        engine.release.set()
        return engine


async def _generate(ae, rid):
    return [o async for o in ae.generate(rid, [1, 2], None)]


def _wait(cond, timeout=10):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_grows_back_after_the_request_in_flight_and_refuses_new_ones_meanwhile():
    first, rebuilder = SlowEngine("degraded"), DegradedRebuilder()
    ae = AsyncEngine(first, health_interval_s=0.05, rebuilder=rebuilder,
                     recovery=RecoveryConfig(timeout_s=30), grow_back_drain_s=30)
    try:
        health = ae.health()
        assert health.alive and health.degraded == rebuilder.degraded
        result = {}
        t = threading.Thread(target=lambda: result.update(a=asyncio.run(_generate(ae, "a"))))
        t.start()
        _wait(lambda: first.requests == ["a"])
        rebuilder.back = True
        _wait(lambda: ae._grow.draining)
        try:
            asyncio.run(_generate(ae, "b"))
            raise AssertionError("admitted while draining")
        except EngineDeadError as exc:
            assert "grow back" in str(exc) and exc.retry_after_s == 10
        first.release.set()  # the request in flight finishes: now it is quiet
        t.join(10)
        assert result["a"][-1].outputs[0].text == "degraded"
        _wait(lambda: ae.alive and ae.engine is not first)
        assert rebuilder.grew and ae.health().degraded is None
        assert ae.recovery.state is EngineState.SERVING and ae.recovery.restarts == 1
        assert asyncio.run(_generate(ae, "c"))[-1].outputs[0].text == "full"
    finally:
        ae.shutdown(5)


def test_a_drain_past_its_limit_fails_the_request_left_with_a_clear_error():
    first, rebuilder = SlowEngine("degraded"), DegradedRebuilder()
    ae = AsyncEngine(first, health_interval_s=0.05, rebuilder=rebuilder,
                     recovery=RecoveryConfig(timeout_s=30), grow_back_drain_s=0.2)
    try:
        errors = []

        def run():
            try:
                asyncio.run(_generate(ae, "a"))
            except EngineDeadError as exc:
                errors.append(exc)

        t = threading.Thread(target=run)
        t.start()
        _wait(lambda: first.requests == ["a"])
        rebuilder.back = True
        t.join(10)
        assert len(errors) == 1, "the request left after the drain was not failed"
        assert "growing back" in str(errors[0]) and errors[0].retry_after_s == 10
        _wait(lambda: ae.alive and ae.engine is not first)
        assert ae.recovery.failures == 0  # a planned rebuild: no crash-loop backoff
    finally:
        ae.shutdown(5)
