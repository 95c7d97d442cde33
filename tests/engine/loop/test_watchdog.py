"""The forward-progress watchdog: the deadline (pure, fake clock) and the engine thread it guards
(a fake engine whose step blocks until interrupted, as a SIGSTOPped worker's does)."""

import asyncio
import threading

import pytest

from engine.loop.async_engine import AsyncEngine
from engine.loop.recovery import EngineState, RecoveryConfig
from engine.loop.watchdog import (
    FACTOR,
    FIRST_STEP_FACTOR,
    StepWatchdog,
    WatchdogConfig,
    WatchdogThread,
    end_stuck_call,
)
from onenode.errors import ConfigError, EngineDeadError
from tests.engine.loop.test_recovery import Clock, FakeExecutorEngine, FakeRebuilder, _wait


def _step(wd, clock, seconds, tokens):
    wd.begin("step", lambda: tokens)
    clock.now += seconds
    wd.end()


def test_deadline_has_a_floor_and_scales_with_measured_steps_and_tokens():
    clock = Clock()
    wd = StepWatchdog(WatchdogConfig(step_timeout_s=10), clock)
    assert wd.deadline_s(1) == 10 * FIRST_STEP_FACTOR  # nothing measured: first-call compiles
    _step(wd, clock, 0.1, 1)
    assert wd.deadline_s(1) == 10  # fast steps never bring it under the floor
    _step(wd, clock, 8.0, 2000)  # a long prefill: 4 ms per token
    assert wd.deadline_s(2000) == pytest.approx(FACTOR * 8.0)
    assert wd.deadline_s(8000) == pytest.approx(FACTOR * 0.004 * 8000)


def test_an_open_call_past_its_deadline_is_overdue_with_a_reason():
    clock = Clock()
    wd = StepWatchdog(WatchdogConfig(step_timeout_s=5), clock)
    _step(wd, clock, 0.1, 4)
    wd.begin("step", lambda: 4)
    clock.now += 4.9
    assert wd.overdue() is None
    clock.now += 0.2
    serial, reason = wd.overdue()
    assert "did not return within 5s" in reason and "--step-timeout" in reason
    wd.end()
    assert wd.overdue() is None  # it returned after all: progress again


def test_health_check_is_bounded_by_the_floor_and_idle_is_progress():
    clock = Clock()
    wd = StepWatchdog(WatchdogConfig(step_timeout_s=5), clock)
    _step(wd, clock, 0.1, 4)
    wd.begin("health check")
    clock.now += 6
    assert "a health check" in wd.overdue()[1]
    wd.end()
    clock.now += 100
    wd.idle()
    assert wd.last_progress == clock.now


def test_monitor_fires_once_per_stuck_call():
    clock, fired = Clock(), []
    wd = StepWatchdog(WatchdogConfig(step_timeout_s=1), clock)
    monitor = WatchdogThread(wd, fired.append)
    wd.begin("step")
    clock.now += 10
    monitor.check_once()
    monitor.check_once()
    assert len(fired) == 1
    wd.end()
    wd.begin("step")
    clock.now += 100
    monitor.check_once()
    assert len(fired) == 2


def test_bad_step_timeout_names_the_flag():
    with pytest.raises(ConfigError, match="--step-timeout"):
        WatchdogConfig(step_timeout_s=0)


def test_a_stuck_call_that_cannot_be_interrupted_exits_the_process():
    exited = []
    end_stuck_call(object(), "stuck", exited.append)  # uni: no interrupt
    assert exited == ["stuck"]

    class Interruptible:
        def interrupt(self, reason):
            return True

    end_stuck_call(Interruptible(), "stuck", exited.append)
    assert exited == ["stuck"]  # the workers were killed instead


class StuckEngine(FakeExecutorEngine):
    """Steps block until `interrupt`, which then fails them as a killed worker does."""

    def __init__(self, name):
        super().__init__(name)
        self.stop, self.released = False, threading.Event()
        self.interrupted = []

    def step(self):
        if self.stop:
            self.released.wait(30)
            raise EngineDeadError("mp worker rank 1 died with exit code -9")
        return super().step()

    def interrupt(self, reason):
        self.interrupted.append(reason)
        self.released.set()
        return True


async def _first_error(ae, rid):
    try:
        async for _ in ae.generate(rid, [1, 2], None):
            pass
    except EngineDeadError as exc:
        return str(exc)


def test_stuck_step_fails_requests_with_the_reason_then_rebuilds():
    first, gate = StuckEngine("first"), threading.Event()
    rebuilder = FakeRebuilder(gate)
    ae = AsyncEngine(first, health_interval_s=0.05, rebuilder=rebuilder,
                     recovery=RecoveryConfig(timeout_s=30),
                     watchdog=WatchdogConfig(step_timeout_s=0.2, check_interval_s=0.02))
    try:
        first.stop = True
        error = asyncio.run(_first_error(ae, "a"))
        assert "did not return within" in error and "stuck" in error
        _wait(lambda: first.interrupted)  # the requests hear first, then the workers go
        assert not ae.alive
        health = ae.health()
        assert health.retry_after_s is not None and "did not return" in health.message
        gate.set()
        _wait(lambda: ae.alive)
        assert ae.recovery.state is EngineState.SERVING and ae.recovery.restarts == 1
        assert asyncio.run(_generate_text(ae, "b")) == "rebuilt"
    finally:
        ae.shutdown(5)


def test_stuck_uni_engine_exits_the_process():
    exited = threading.Event()
    engine = FakeExecutorEngine("uni")
    released = threading.Event()
    engine.step = lambda: released.wait(30) or []  # stuck, and nothing can interrupt it
    ae = AsyncEngine(engine, health_interval_s=0.05, exit_process=lambda r: exited.set(),
                     watchdog=WatchdogConfig(step_timeout_s=0.2, check_interval_s=0.02))
    try:
        error = asyncio.run(_first_error(ae, "a"))
        assert "did not return within" in error
        assert exited.wait(5) and not ae.alive
        assert ae.recovery.state is EngineState.FAILED  # no rebuilder: nothing else to do
    finally:
        released.set()
        ae.shutdown(5)


async def _generate_text(ae, rid):
    return [o async for o in ae.generate(rid, [1], None)][-1].outputs[0].text


def test_sigstopped_mp_worker_turns_health_503_fails_the_stream_then_rebuilds(tiny_llama):
    """The real thing: PP=2 over two mp worker processes, one SIGSTOPped mid-stream."""
    import os
    import signal
    import time

    import httpx
    import openai

    from engine.loop.rebuilder import EngineRebuilder
    from engine.loop.llm_engine import LLMEngine
    from tests.engine.entrypoints.conftest import engine_config, running_server

    config = engine_config(tiny_llama, distributed_executor_backend="mp",
                           pipeline_parallel_size=2)
    engine = LLMEngine(config)
    with running_server(engine, rebuilder=EngineRebuilder(config, "mp"),
                        recovery=RecoveryConfig(timeout_s=120),
                        watchdog=WatchdogConfig(step_timeout_s=2)) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0, timeout=60)
        body = dict(model=srv.name, prompt="w5 w6", max_tokens=200, temperature=0)
        before = client.completions.create(**{**body, "max_tokens": 8}).choices[0].text
        stream = client.completions.create(**body, stream=True, extra_body={"ignore_eos": True})
        assert next(iter(stream)).choices
        os.kill(engine.executor.procs[1].pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        with pytest.raises(openai.APIError, match="did not return within"):
            for _ in stream:
                pass
        while (r := httpx.get(srv.url + "/health")).status_code != 503:
            time.sleep(0.05)
        assert time.monotonic() - stopped_at < 10, "stuck engine detected too late"
        assert r.json()["error"]["code"] == "engine_recovering", r.text
        deadline = time.monotonic() + 90
        while httpx.get(srv.url + "/health").status_code != 200:
            assert time.monotonic() < deadline, "not serving again 90 s after the stop"
            time.sleep(0.2)
        after = client.completions.create(**{**body, "max_tokens": 8}).choices[0].text
        assert after == before and srv.async_engine.recovery.restarts == 1
