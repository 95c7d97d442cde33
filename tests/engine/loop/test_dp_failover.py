"""Data parallel behind one server, for real: DP=2 on mp, SIGKILL one replica's worker while
streams run on it; every stream completes with the text of an uninterrupted run (greedy and
seeded), /health and /metrics show the replica recovering, then serving again once rebuilt."""

import asyncio
import os
import signal
import threading
import time

import httpx
import openai
import pytest
import uvicorn

from engine.entrypoints.api_server import build_app
from engine.loop.rebuilder import EngineRebuilder
from engine.loop.async_engine import AsyncEngine
from engine.loop.dp_client import DataParallelClient
from engine.loop.llm_engine import LLMEngine
from engine.loop.recovery import RecoveryConfig
from engine.loop.replicas import start_replicas
from tests.engine.entrypoints.conftest import engine_config, free_port, metric

PROMPTS = [f"w{5 + i} w{40 + 3 * i} w{90 + i} w{7 * i + 11}" for i in range(6)]
MAX_TOKENS = 100


@pytest.fixture
def dp_server(tiny_llama):
    engines = start_replicas(engine_config(tiny_llama, data_parallel_size=2), LLMEngine)
    replicas = [AsyncEngine(e, health_interval_s=0.2, rebuilder=EngineRebuilder(e.config,
                                                                                 e.backend),
                            recovery=RecoveryConfig(enabled=True, timeout_s=120))
                for e in engines]
    client = DataParallelClient(replicas, block_size=4, max_migrations=1)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(client, "tiny", "/m"), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive()
            time.sleep(0.02)
        yield f"http://127.0.0.1:{port}", client
    finally:
        server.should_exit = True
        thread.join(15)
        client.shutdown()


def params(i):
    seeded = {"temperature": 1.0, "seed": 100 + i} if i % 2 else {"temperature": 0}
    return {"max_tokens": MAX_TOKENS, "extra_body": {"ignore_eos": True}, **seeded}


async def streams(url, started=None):
    api = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=120)

    async def one(i):
        text, chunks = "", 0
        async for chunk in await api.completions.create(model="tiny", prompt=PROMPTS[i],
                                                        stream=True, **params(i)):
            text += chunk.choices[0].text if chunk.choices else ""
            chunks += 1
            if started is not None and chunks == 3:
                started[i].set()
        return text

    return await asyncio.gather(*(one(i) for i in range(len(PROMPTS))))


def test_streams_survive_a_replica_death_and_the_replica_rejoins(dp_server):
    url, client = dp_server
    reference = asyncio.run(streams(url))
    assert all(len(t.split()) == MAX_TOKENS for t in reference)
    victim = client.replicas[0].engine.executor.procs[0].pid

    async def with_kill():
        started = [asyncio.Event() for _ in PROMPTS]
        task = asyncio.ensure_future(streams(url, started))
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), 60)
        assert client.stats["replicas"][0]["num_running"] > 0  # the victim has work in flight
        os.kill(victim, signal.SIGKILL)
        return await task

    assert asyncio.run(with_kill()) == reference  # no error, nothing repeated or missing
    assert client.migrations_total > 0
    body = httpx.get(url + "/health").json()
    assert [r["state"] for r in body["replicas"]][1] == "serving"
    deadline = time.monotonic() + 120
    while True:  # the replica rebuilds itself in the background and rejoins
        text = httpx.get(url + "/metrics").text
        if metric(text, 'onenode_replica_state{model_name="tiny",replica="0",state="serving"}'):
            break
        assert time.monotonic() < deadline, "replica 0 did not rejoin"
        time.sleep(0.5)
    assert httpx.get(url + "/health").json()["replicas"][0] == \
        {"replica": 0, "state": "serving", "restarts": 1}
    assert metric(text, "onenode_request_migrations_total") == client.migrations_total
    assert asyncio.run(streams(url)) == reference  # and serves again
