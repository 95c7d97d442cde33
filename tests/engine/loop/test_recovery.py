"""The recovery state machine (pure, fake clock and builder) and the engine thread that drives it
(a fake engine whose executor dies on demand): fail, degrade, rebuild, serve again, or give up."""

import asyncio
import threading
import time

import pytest

from engine.loop.async_engine import AsyncEngine
from engine.loop.recovery import EngineState, Recovery, RecoveryConfig, rebuild
from engine.outputs import CompletionOutput, RequestOutput
from onenode.errors import ConfigError, EngineDeadError


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.now += s


def test_failure_degrades_then_a_rebuild_serves_again():
    clock = Clock()
    rec = Recovery(RecoveryConfig(timeout_s=300), clock)
    rec.fail("ray worker died")
    assert rec.state is EngineState.DEGRADED and "ray worker died" in rec.describe()
    waited = []
    engine = rebuild(rec, waited.append, lambda t: "new engine", sleep=clock.sleep)
    assert engine == "new engine" and rec.state is EngineState.SERVING
    assert rec.restarts == 1 and waited == [300.0] and rec.reason is None


def test_failed_attempts_retry_with_backoff_until_one_succeeds():
    clock = Clock()
    rec = Recovery(RecoveryConfig(timeout_s=300), clock)
    rec.fail("node down")
    results = iter([RuntimeError("no devices"), RuntimeError("pg not ready"), "engine"])

    def build(timeout_s):
        r = next(results)
        if isinstance(r, Exception):
            raise r
        return r

    assert rebuild(rec, lambda t: None, build, sleep=clock.sleep) == "engine"
    assert rec.attempts == 3 and clock.now == 1 + 2 and rec.restarts == 1


def test_recovery_timeout_ends_in_failed_with_the_last_error():
    clock = Clock()
    rec = Recovery(RecoveryConfig(timeout_s=20), clock)
    rec.fail("node down")

    def wait(timeout):
        clock.now += timeout  # the devices never come back
        raise TimeoutError("1 of 3 devices")

    gave_up = lambda: rec.state is EngineState.FAILED  # noqa: E731 - else it retries slowly
    assert rebuild(rec, wait, lambda t: "never", gave_up, sleep=clock.sleep) is None
    assert rec.state is EngineState.FAILED and rec.restarts == 0 and not rec.final
    assert "within 20s" in rec.reason and "1 of 3 devices" in rec.reason
    assert "still retries every 60s" in rec.describe() and rec.retry_after_s() == 60
    assert rec.backoff_s() == 60


def test_no_recovery_fails_at_once_and_bad_timeout_names_the_flag():
    rec = Recovery(RecoveryConfig(enabled=False))
    rec.fail("rank 2 died")
    assert rec.state is EngineState.FAILED and "rank 2 died" in rec.describe() and rec.final
    assert "restart `onenode serve`" in rec.describe() and rec.retry_after_s() is None
    with pytest.raises(ConfigError, match="--recovery-timeout"):
        RecoveryConfig(timeout_s=0)


def test_stopping_interrupts_recovery():
    rec = Recovery(RecoveryConfig())
    rec.fail("x")
    assert rebuild(rec, lambda t: None, lambda t: "e", stopping=lambda: True) is None


class FakeExecutorEngine:
    """Just enough of LLMEngine for AsyncEngine: one request finishes per step; `die` makes the
    next step raise as a dead rank does."""

    tokenizer, max_model_len = None, 64
    model_config = type("ModelConfig", (), {"vocab_size": 16})

    def __init__(self, name):
        self.name, self.requests, self.die, self.shut = name, [], False, False

    def stats(self):
        return {"num_running": len(self.requests), "num_waiting": 0}

    def has_unfinished_requests(self):
        return bool(self.requests)

    def add_request(self, request_id, prompt, params, prompt_text=None):
        self.requests.append(request_id)

    def abort_request(self, request_id):
        if request_id in self.requests:
            self.requests.remove(request_id)

    def step(self):
        if self.die:
            raise EngineDeadError("a ray worker died (ActorDiedError)")
        rid = self.requests.pop(0)
        return [RequestOutput(rid, None, [], [CompletionOutput(0, self.name, [1], "stop")],
                              True)]

    def check_health(self):
        if self.die:
            raise EngineDeadError("node 172.30.1.12 died")

    def shutdown(self):
        self.shut = True


class FakeRebuilder:
    def __init__(self, gate: threading.Event):
        self.gate, self.built = gate, []

    def wait_for_devices(self, timeout_s):
        if not self.gate.wait(timeout_s):
            raise TimeoutError("devices did not come back")

    def build(self):
        hang, self.hang = getattr(self, "hang", None), None
        if hang is not None:  # this attempt hangs until the test lets it finish
            hang.wait(30)
        self.built.append(FakeExecutorEngine("rebuilt"))
        return self.built[-1]


async def _generate(ae, rid):
    return [o async for o in ae.generate(rid, [1, 2], None)]


def _wait(cond, timeout=10):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_engine_thread_fails_in_flight_then_rebuilds_and_serves():
    first, gate = FakeExecutorEngine("first"), threading.Event()
    rebuilder = FakeRebuilder(gate)
    ae = AsyncEngine(first, health_interval_s=0.05, rebuilder=rebuilder,
                     recovery=RecoveryConfig(timeout_s=30))
    try:
        assert asyncio.run(_generate(ae, "a"))[-1].outputs[0].text == "first"
        first.die = True  # noticed by the idle health check
        _wait(lambda: ae.recovery.state is EngineState.RECOVERING)
        assert not ae.alive and first.shut and "172.30.1.12" in ae.recovery.reason
        with pytest.raises(EngineDeadError):
            asyncio.run(_generate(ae, "b"))  # refused while rebuilding (the API: 503)
        gate.set()  # the node is back
        _wait(lambda: ae.alive)
        assert ae.recovery.restarts == 1 and ae.recovery.state is EngineState.SERVING
        assert asyncio.run(_generate(ae, "c"))[-1].outputs[0].text == "rebuilt"
    finally:
        ae.shutdown(5)


def test_engine_thread_fails_after_the_budget_answers_retry_after_and_comes_back():
    failed, gate = threading.Event(), threading.Event()
    ae = AsyncEngine(FakeExecutorEngine("first"), health_interval_s=0.05,
                     rebuilder=FakeRebuilder(gate), on_failed=failed.set,
                     recovery=RecoveryConfig(timeout_s=0.3, attempt_timeout_s=0.1,
                                             backoff_cap_s=0.2))
    try:
        ae.engine.die = True
        _wait(lambda: ae.recovery.state is EngineState.FAILED)
        health = ae.health()
        assert not ae.alive and health.state == "failed" and health.retry_after_s == 1
        assert "still retries" in health.message and not failed.is_set()  # the port stays open
        gate.set()  # the node is back: the slow retries find it
        _wait(lambda: ae.alive)
        assert ae.recovery.state is EngineState.SERVING
    finally:
        ae.shutdown(5)


def test_adds_queued_at_a_failure_are_uncounted_so_the_queue_limit_still_admits():
    """`_close` fails the adds still queued; each must leave `num_waiting` (which the server's
    queue limit reads), or a few failures would answer "busy" to everyone for good."""
    first, gate = FakeExecutorEngine("first"), threading.Event()
    gate.set()
    release = threading.Event()

    def blocked_step():
        release.wait(10)  # while the engine thread is here, new adds only queue up
        raise EngineDeadError("a ray worker died (ActorDiedError)")

    first.step = blocked_step
    ae = AsyncEngine(first, health_interval_s=0.05, rebuilder=FakeRebuilder(gate),
                     recovery=RecoveryConfig(timeout_s=30))

    async def scenario():
        running = asyncio.ensure_future(_generate(ae, "running"))
        await asyncio.to_thread(_wait, lambda: first.requests)
        queued = [asyncio.ensure_future(_generate(ae, f"q{i}")) for i in range(5)]
        await asyncio.sleep(0.05)
        assert ae.num_waiting == 5
        release.set()
        results = await asyncio.gather(running, *queued, return_exceptions=True)
        assert all(isinstance(r, EngineDeadError) for r in results)

    try:
        asyncio.run(scenario())
        _wait(lambda: ae.alive)
        assert ae.num_waiting == 0
        assert asyncio.run(_generate(ae, "after"))[-1].outputs[0].text == "rebuilt"
    finally:
        ae.shutdown(5)


def test_crash_loop_keeps_its_deadline_and_backs_off_up_to_the_cap():
    clock = Clock()
    rec = Recovery(RecoveryConfig(timeout_s=300, backoff_cap_s=8), clock)
    rec.fail("stage link broken")
    assert rebuild(rec, lambda t: None, lambda t: "engine", sleep=clock.sleep) == "engine"
    clock.now += 5  # "serving" for 5 s, then stuck again: the same loop
    rec.fail("stuck step")
    assert rec.deadline == 300 and rec.failures == 1
    delays = []
    for _ in range(6):
        rec.attempt_failed("still broken")
        delays.append(rec.backoff_s())
    assert delays == [2, 4, 8, 8, 8, 8]
    clock.now = 400  # the budget is spent
    rec.attempt_failed("still broken")
    assert rec.state is EngineState.FAILED and "within 300s" in rec.reason
    rec.rebuilt()
    clock.now += 301  # served longer than the budget: a new failure starts a new loop
    rec.fail("node down")
    assert rec.deadline == clock.now + 300 and rec.failures == 0
    assert rec.state is EngineState.DEGRADED


def test_each_attempt_has_its_own_deadline():
    """The first build hangs (loading never finishes): abandoned after attempt_timeout_s,
    and the second attempt serves."""
    first, gate = FakeExecutorEngine("first"), threading.Event()
    gate.set()
    rebuilder = FakeRebuilder(gate)
    rebuilder.hang = hang = threading.Event()
    ae = AsyncEngine(first, health_interval_s=0.05, rebuilder=rebuilder,
                     recovery=RecoveryConfig(timeout_s=30, attempt_timeout_s=0.3))
    try:
        first.die = True
        _wait(lambda: ae.alive and ae.recovery.restarts == 1)
        assert ae.recovery.attempts == 2
        hang.set()  # the abandoned attempt finishes late: its engine is shut down
        _wait(lambda: len(rebuilder.built) == 2 and rebuilder.built[1].shut)
        assert ae.engine is rebuilder.built[0] and not ae.engine.shut
    finally:
        ae.shutdown(5)


def test_sticky_device_error_in_process_exits_instead_of_rebuilding():
    failed = threading.Event()
    engine = FakeExecutorEngine("uni")
    engine.backend = "uni"

    def poisoned():
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    engine.step = poisoned
    rebuilder = FakeRebuilder(threading.Event())
    ae = AsyncEngine(engine, health_interval_s=0.05, rebuilder=rebuilder,
                     recovery=RecoveryConfig(timeout_s=30), on_failed=failed.set)
    try:
        with pytest.raises(EngineDeadError, match="illegal memory access"):
            asyncio.run(_generate(ae, "a"))
        assert failed.wait(5) and ae.recovery.final and not rebuilder.built
        assert "exiting so a new process serves" in ae.health().message
    finally:
        ae.shutdown(5)
