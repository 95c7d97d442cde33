"""The server's limits and stats with the official openai client, on a live server whose
ServerConfig comes from `onenode serve` flags and VLLM_API_KEY (the derived CLI path)."""

import logging
import threading
import time

import httpx
import openai
import pytest
import typer
from typer.testing import CliRunner

from engine.loop.llm_engine import LLMEngine
from engine.entrypoints import api_server
from engine.entrypoints.serve_cli import serve
from tests.engine.entrypoints.conftest import engine_config, running_server

KEY = "vllm-env-key-51c2"
FLAGS = ["--max-request-body-bytes", "65536", "--max-prompts-per-request", "8",
         "--max-stop-strings", "4", "--max-messages", "8", "--max-waiting-requests", "1"]


def _server_config(monkeypatch):
    """ServerConfig exactly as `VLLM_API_KEY=... onenode serve MODEL <FLAGS>` builds it."""
    got = {}
    monkeypatch.setattr(api_server, "run_server", lambda e, s: got.update(server=s))
    app = typer.Typer()
    app.command("serve")(serve)
    app.callback()(lambda: None)
    result = CliRunner().invoke(app, ["serve", "m", *FLAGS], env={"VLLM_API_KEY": KEY})
    assert result.exit_code == 0, result.output
    # A short stats interval so the test sees the line without waiting 10 s.
    return type(got["server"])(**{**_fields(got["server"]), "log_stats_interval_s": 0.3})


def _fields(cfg) -> dict:
    return {name: getattr(cfg, name) for name in cfg.__dataclass_fields__}


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def limited(tiny_llama):
    with pytest.MonkeyPatch.context() as mp:
        server = _server_config(mp)
    stats = _Lines()
    logging.getLogger("onenode.stats").addHandler(stats)
    engine = LLMEngine(engine_config(tiny_llama, max_num_seqs=1))
    try:
        with running_server(engine, server=server) as srv:
            srv.stats_lines = stats.lines
            yield srv
    finally:
        logging.getLogger("onenode.stats").removeHandler(stats)


def _client(srv, key=KEY):
    return openai.OpenAI(base_url=srv.base_url, api_key=key, max_retries=0, timeout=60)


def test_key_comes_from_vllm_api_key(limited):
    assert _client(limited).models.list().data[0].id == limited.name
    with pytest.raises(openai.AuthenticationError):
        _client(limited, "wrong").models.list()


def _stream(srv, into: list, max_tokens: int = 200) -> None:
    stream = _client(srv).completions.create(
        model=srv.name, prompt="w5 w6 w7", max_tokens=max_tokens, temperature=0, stream=True,
        extra_body={"ignore_eos": True})
    for chunk in stream:
        into.append(chunk.choices[0].text if chunk.choices else "")


def test_hostile_requests_are_refused_while_a_stream_keeps_flowing(limited):
    chunks: list = []
    streamer = threading.Thread(target=_stream, args=(limited, chunks))
    streamer.start()
    headers = {"Authorization": f"Bearer {KEY}"}
    url = limited.base_url + "/completions"
    try:
        big = httpx.post(url, headers=headers, timeout=30,
                         json={"model": limited.name, "prompt": "w5 " * 40_000, "max_tokens": 1})
        assert big.status_code == 413, big.text
        assert "--max-request-body-bytes" in big.json()["error"]["message"]
        with pytest.raises(openai.BadRequestError) as err:
            _client(limited).completions.create(model=limited.name, prompt=["w5"] * 9,
                                                max_tokens=1)
        assert "9 prompts; the limit is 8" in str(err.value)
        with pytest.raises(openai.BadRequestError, match="5 stop strings; the limit is 4"):
            _client(limited).completions.create(model=limited.name, prompt="w5", max_tokens=1,
                                                stop=["w1", "w2", "w3", "w4", "w8"])
        with pytest.raises(openai.BadRequestError, match="9 messages; the limit is 8"):
            _client(limited).chat.completions.create(
                model=limited.name, max_tokens=1,
                messages=[{"role": "user", "content": "w5"}] * 9)
    finally:
        streamer.join(120)
    assert not streamer.is_alive()
    assert sum(1 for c in chunks if c) == 200, "the concurrent stream must run to the end"


def test_full_waiting_queue_is_503_with_retry_after(limited):
    running: list = []
    first = threading.Thread(target=_stream, args=(limited, running, 240))
    first.start()
    second_done: list = []
    second = None
    try:
        _wait(lambda: limited.async_engine.stats.get("num_running", 0) >= 1)
        second = threading.Thread(target=_stream, args=(limited, second_done, 2))
        second.start()
        _wait(lambda: limited.async_engine.num_waiting >= 1)  # max_num_seqs=1: it waits
        r = httpx.post(limited.base_url + "/completions",
                       headers={"Authorization": f"Bearer {KEY}"}, timeout=30,
                       json={"model": limited.name, "prompt": "w5", "max_tokens": 1})
        assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text
        assert "--max-waiting-requests" in r.json()["error"]["message"]
    finally:
        first.join(120)
        if second is not None:
            second.join(120)
    assert second_done, "the waiting request still completes"


def test_stats_line_appears_while_there_is_work(limited):
    before = len(limited.stats_lines)
    _stream(limited, [], 100)
    _wait(lambda: len(limited.stats_lines) > before)
    line = limited.stats_lines[-1]
    assert "Avg prompt throughput:" in line and "KV cache usage:" in line
    assert "Prefix cache hit rate:" in line and "Running:" in line


def _wait(cond, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


def test_a_prompt_longer_than_any_context_is_refused_before_tokenizing(limited):
    text = "w5 " * 20_000  # 60 kB: under the body cap, far beyond 256 tokens of at most 4 chars
    with pytest.raises(openai.BadRequestError, match="maximum context length is 256 tokens"):
        _client(limited).completions.create(model=limited.name, prompt=text, max_tokens=1)
