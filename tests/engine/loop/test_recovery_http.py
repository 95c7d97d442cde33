"""What HTTP clients see while the engine recovers and after it gave up, on a real server: every
request 503 + Retry-After (completions, chat, a grammar request), never a 500; /live stays 200
during recovery and turns 503 only once the budget is spent; the port keeps answering."""

import asyncio
import threading
import time

import httpx
import pytest

from engine.loop.async_engine import AsyncEngine
from engine.loop.llm_engine import LLMEngine
from engine.loop.recovery import RecoveryConfig
from onenode.errors import EngineDeadError
from tests.engine.entrypoints.conftest import engine_config, running_server
from tests.engine.loop.test_recovery import FakeExecutorEngine, FakeRebuilder, _generate, _wait


class NeverBack:
    """The devices never come back within an attempt: every attempt fails after its wait."""

    def wait_for_devices(self, timeout_s):
        threading.Event().wait(min(timeout_s, 0.2))
        raise TimeoutError("1 of 2 nodes is still missing")

    def build(self):
        raise AssertionError("never reached")


def _wait_for(url, status, path="/health", timeout=20):
    deadline = time.monotonic() + timeout
    while (r := httpx.get(url + path)).status_code != status:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.05)
    return r


def test_recovering_then_failed_answers_503_with_retry_after_never_500(tiny_llama):
    engine = LLMEngine(engine_config(tiny_llama))
    recovery = RecoveryConfig(timeout_s=2, retry_after_s=5, attempt_timeout_s=0.3,
                              backoff_cap_s=1)
    with running_server(engine, rebuilder=NeverBack(), recovery=recovery) as srv:
        engine._dead = "rank 1 died"  # the next idle health check finds it
        r = _wait_for(srv.url, 503)
        assert r.headers["retry-after"] == "5" and r.json()["error"]["code"] == "engine_recovering"
        assert httpx.get(srv.url + "/live").status_code == 200  # recovering is alive
        schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
        requests = [
            ("/completions", {"model": srv.name, "prompt": "w5", "max_tokens": 4}),
            ("/chat/completions", {"model": srv.name, "max_tokens": 4,
                                   "messages": [{"role": "user", "content": "w5"}]}),
            ("/chat/completions", {"model": srv.name, "max_tokens": 4,
                                   "messages": [{"role": "user", "content": "w5"}],
                                   "response_format": {"type": "json_schema", "json_schema": {
                                       "name": "x", "schema": schema}}}),
        ]
        for path, body in requests:
            r = httpx.post(srv.base_url + path, json=body, timeout=30)
            assert r.status_code == 503 and r.headers.get("retry-after"), (path, r.text)
        r = _wait_for(srv.url, 503, "/live")  # the 2 s budget is spent: failed
        assert r.json()["error"]["code"] == "engine_failed"
        health = httpx.get(srv.url + "/health")
        assert health.status_code == 503 and health.headers["retry-after"] == "1"
        assert health.json()["error"]["code"] == "engine_failed"
        assert "within 2s" in health.json()["error"]["message"]
        for path, body in requests:
            r = httpx.post(srv.base_url + path, json=body, timeout=30)
            assert r.status_code == 503 and r.headers.get("retry-after"), (path, r.text)


def test_refusals_during_recovery_carry_retry_after_on_every_path():
    """generate and compile_grammar (the structured-output path) while rebuilding: 503 +
    Retry-After, never a 500 and never "restart" (the server maps them with from_exception)."""
    from engine.entrypoints.errors import from_exception

    first, gate = FakeExecutorEngine("first"), threading.Event()
    ae = AsyncEngine(first, health_interval_s=0.05, rebuilder=FakeRebuilder(gate),
                     recovery=RecoveryConfig(timeout_s=30, retry_after_s=7))
    try:
        first.die = True
        _wait(lambda: ae.engine is None)
        errors = []
        for call in (lambda: asyncio.run(_generate(ae, "b")), lambda: ae.compile_grammar(None)):
            with pytest.raises(EngineDeadError) as info:
                call()
            errors.append(from_exception(info.value))
        for err in errors:
            assert err.status == 503 and err.headers == {"Retry-After": "7"}, err.message
            assert err.code == "engine_recovering" and "restart" not in err.message
    finally:
        gate.set()
        ae.shutdown(5)


class Degraded:
    """A rebuilder whose engine serves a re-planned layout (a node is gone)."""

    degraded = "TP=1 x PP=1 instead of TP=1 x PP=2 (a node is gone)"

    def can_grow_back(self):
        return False


def test_degraded_health_is_200_and_names_the_layout_in_health_and_metrics(tiny_llama):
    engine = LLMEngine(engine_config(tiny_llama))
    with running_server(engine, rebuilder=Degraded()) as srv:
        r = httpx.get(srv.url + "/health")
        assert r.status_code == 200 and r.json() == {"state": "serving", "degraded": True,
                                                     "layout": Degraded.degraded}
        assert "onenode_engine_degraded{" in (m := httpx.get(srv.url + "/metrics").text)
        assert [line for line in m.splitlines()
                if line.startswith("onenode_engine_degraded{")][0].endswith(" 1.0")
