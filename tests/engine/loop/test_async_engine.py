"""The engine loop behind the server: a dead worker turns /health to 503 and ends in-flight
requests with an error (no hang); requests after that are refused with 503."""

import concurrent.futures
import os
import signal
import time

import httpx
import openai
import pytest

from engine.loop.llm_engine import LLMEngine
from tests.engine.entrypoints.conftest import engine_config, running_server


def test_killed_worker_makes_health_503_and_fails_in_flight_requests(tiny_llama):
    # One sequence at a time: the second request waits in the queue, so at the kill one request
    # is mid-stream and one is queued, deterministically.
    engine = LLMEngine(engine_config(tiny_llama, distributed_executor_backend="mp",
                                     max_num_seqs=1))
    with running_server(engine) as srv:
        assert httpx.get(srv.url + "/health").status_code == 200
        client = openai.OpenAI(base_url=srv.base_url, api_key="x", max_retries=0, timeout=30)
        stream = client.completions.create(model=srv.name, prompt="w5 w6", max_tokens=250,
                                           temperature=0, stream=True,
                                           extra_body={"ignore_eos": True})
        assert next(iter(stream)).choices  # the request is running
        body = {"prompt": "w8 w9", "max_tokens": 120, "ignore_eos": True}
        queued = concurrent.futures.ThreadPoolExecutor(1).submit(
            httpx.post, srv.base_url + "/completions", json=body, timeout=30)
        while srv.async_engine.stats["num_waiting"] < 1:
            time.sleep(0.005)
        killed_at = time.monotonic()
        for proc in engine.executor.procs:
            os.kill(proc.pid, signal.SIGKILL)
        with pytest.raises(openai.APIError, match="engine is dead"):
            for _ in stream:
                pass
        while httpx.get(srv.url + "/health").status_code != 503:
            assert time.monotonic() - killed_at < 10, "/health still 200 10 s after the kill"
            time.sleep(0.1)
        for r in (queued.result(),
                  httpx.post(srv.base_url + "/completions", json={"prompt": "w5"})):
            assert r.status_code == 503 and r.json()["error"]["code"] == "engine_dead", r.text


def test_idle_engine_death_is_noticed_without_traffic(tiny_llama):
    engine = LLMEngine(engine_config(tiny_llama, distributed_executor_backend="mp"))
    with running_server(engine) as srv:
        os.kill(engine.executor.procs[0].pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while httpx.get(srv.url + "/health").status_code != 503:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert "mp worker rank 0" in httpx.get(srv.url + "/health").json()["error"]["message"]
        r = httpx.post(srv.base_url + "/chat/completions",
                       json={"messages": [{"role": "user", "content": "w5"}]})
        assert r.status_code == 503 and "restart" in r.json()["error"]["message"]


def test_killed_worker_is_rebuilt_and_answers_the_same(tiny_llama):
    """Recovery on (what `onenode serve` does): 503 + Retry-After while rebuilding, then 200, one
    restart counted, and the same greedy answer as before the crash."""
    from engine.loop.rebuilder import EngineRebuilder
    from engine.loop.recovery import RecoveryConfig
    from tests.engine.entrypoints.conftest import metric

    config = engine_config(tiny_llama, distributed_executor_backend="mp")
    engine = LLMEngine(config)
    with running_server(engine, rebuilder=EngineRebuilder(config, "mp"),
                        recovery=RecoveryConfig(timeout_s=120)) as srv:
        body = {"model": srv.name, "prompt": "w5 w6 w7", "max_tokens": 12, "temperature": 0}
        before = httpx.post(srv.base_url + "/completions", json=body, timeout=60).json()
        os.kill(engine.executor.procs[0].pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (r := httpx.get(srv.url + "/health")).status_code != 503:
            assert time.monotonic() < deadline, "/health still 200 10 s after the kill"
            time.sleep(0.05)
        assert r.json()["error"]["code"] == "engine_recovering", r.text
        assert "mp worker rank 0" in r.json()["error"]["message"]
        refused = httpx.post(srv.base_url + "/completions", json=body, timeout=60)
        if refused.status_code == 503:
            assert refused.headers["retry-after"] == "10", refused.text
        deadline = time.monotonic() + 90
        while httpx.get(srv.url + "/health").status_code != 200:
            assert time.monotonic() < deadline, "not serving again 90 s after the kill"
            time.sleep(0.2)
        after = httpx.post(srv.base_url + "/completions", json=body, timeout=60).json()
        assert after["choices"][0]["text"] == before["choices"][0]["text"]
        text = httpx.get(srv.url + "/metrics").text
        assert metric(text, "onenode_engine_restarts_total") == 1
        assert 'onenode_engine_state{model_name="tiny-llama",state="serving"} 1.0' in text
