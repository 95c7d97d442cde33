"""A real LLMEngine on a tiny random Llama checkpoint, served by a real uvicorn on 127.0.0.1."""

import socket
import threading
import time
import types
from contextlib import contextmanager

import pytest
import torch
import uvicorn

from engine.config import EngineConfig
from engine.loop.llm_engine import LLMEngine
from engine.entrypoints.api_server import build_app
from engine.loop.async_engine import AsyncEngine
from tests.engine.tiny_models import make_llama

MAX_MODEL_LEN = 256  # the tiny checkpoint's max_position_embeddings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def engine_config(path, **kw) -> EngineConfig:
    kw = {"dtype": "float32", "kv_cache_space_gib": 0.02, "max_model_len": MAX_MODEL_LEN,
          "block_size": 4, **kw}
    return EngineConfig(model=str(path), **kw)


@contextmanager
def running_server(engine, name="tiny-llama", api_key=None, server=None, **engine_kw):
    """Serves `engine` in a background thread; shuts both down afterwards. `server`: a
    ServerConfig (its host/port are not used); `engine_kw` go to AsyncEngine (e.g. a rebuilder,
    which turns recovery on)."""
    async_engine = AsyncEngine(engine, health_interval_s=0.2, **engine_kw)
    port = free_port()
    app = build_app(async_engine, name, "/models/tiny", api_key, server)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
            time.sleep(0.02)
        url = f"http://127.0.0.1:{port}"
        yield types.SimpleNamespace(url=url, base_url=url + "/v1", engine=engine,
                                    async_engine=async_engine, name=name,
                                    tokenizer=engine.tokenizer,
                                    max_model_len=engine.max_model_len)
    finally:
        server.should_exit = True
        thread.join(15)
        async_engine.shutdown()


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    torch.set_num_threads(1)
    return make_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def server(tiny_llama):
    with running_server(LLMEngine(engine_config(tiny_llama))) as srv:
        yield srv


def metric(text: str, name: str) -> float:
    """Sum of a Prometheus metric's samples (all label sets) in /metrics text."""
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    assert found, f"{name} not in /metrics"
    return total


class Reference:
    """LLM.generate / LLM.chat, greedy: the offline answers the API must reproduce."""

    def __init__(self, path):
        from engine import LLM

        self.llm = LLM(str(path), dtype="float32", kv_cache_space_gib=0.02,
                       max_model_len=MAX_MODEL_LEN, block_size=4)

    def _params(self, max_tokens):
        from engine import SamplingParams

        return SamplingParams(temperature=0, max_tokens=max_tokens)

    def generate(self, prompt, max_tokens):
        return self.llm.generate(prompt, self._params(max_tokens), use_tqdm=False)[0].outputs[0]

    def chat(self, messages, max_tokens):
        return self.llm.chat(messages, self._params(max_tokens), use_tqdm=False)[0].outputs[0]


@pytest.fixture(scope="module")
def reference(tiny_llama):
    ref = Reference(tiny_llama)
    yield ref
    ref.llm.shutdown()
