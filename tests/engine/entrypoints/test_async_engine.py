"""The engine loop behind the server: a dead worker turns /health to 503 and ends in-flight
requests with an error (no hang); requests after that are refused with 503."""

import concurrent.futures
import os
import signal
import time

import httpx
import openai
import pytest

from engine.core.engine import LLMEngine
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
