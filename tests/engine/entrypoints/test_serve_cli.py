"""`onenode serve` as a user runs it: a real process, vLLM flag names, Ctrl-C/SIGTERM cleanup,
secrets kept out of the logs; and `onenode bench serve` against a live server."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from bench.cli import bench_serve
from tests.engine.entrypoints.conftest import free_port

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_serve_process_answers_and_sigterm_stops_workers(tiny_llama, tmp_path):
    port, hf_token, api_key = free_port(), "hf_NeverLogThisToken42", "cli-key-7f3a"
    env = dict(os.environ, HF_TOKEN=hf_token, ONENODE_API_KEY=api_key, PYTHONPATH=str(REPO),
               OMP_NUM_THREADS="1")
    log_path = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "onenode.cli", "serve", str(tiny_llama), "--port", str(port),
           "--distributed-executor-backend", "mp", "--served-model-name", "tiny",
           "--max-model-len", "64", "--kv-cache-space-gib", "0.01", "--dtype", "float32",
           "--block-size", "8", "--max-num-seqs", "8", "--no-enable-prefix-caching"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc, log_path)
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert workers, "the mp backend should have started a worker process"
        body = {"model": "tiny", "messages": [{"role": "user", "content": "w5 w6"}],
                "max_tokens": 4}
        assert httpx.post(url + "/v1/chat/completions", json=body).status_code == 401
        r = httpx.post(url + "/v1/chat/completions", json=body,
                       headers={"Authorization": f"Bearer {api_key}"}, timeout=60)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log_path.read_text()[-3000:]
        gone, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, f"workers left behind: {alive}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log_path.read_text()
    assert f"http://127.0.0.1:{port}/v1" in text and "# CPU blocks:" in text
    assert hf_token not in text and api_key not in text


def _wait_healthy(url: str, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, log_path.read_text()[-3000:]
        assert time.monotonic() < deadline, "server did not become healthy"
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)


def test_bench_serve_against_a_live_server(server, tmp_path):
    bench_serve(url=server.url, num_requests=6, concurrency="1,3", prompt_len="4,8",
                output_len="2,5", vocab_size=500, seed=0, model=None, api_key=None,
                out=tmp_path, name="serve")
    res = json.loads((tmp_path / "serve.json").read_text())
    assert res["model"] == server.name
    assert [r["concurrency"] for r in res["runs"]] == [1, 3]
    for run in res["runs"]:
        assert run["completed"] == 6 and run["failed"] == 0, run
        assert run["output_tokens"] >= 6 * 2 and run["ttft_ms"]["p50"] > 0
    assert (tmp_path / "serve.png").stat().st_size > 1000


@pytest.mark.parametrize("how", ["flag", "env"])
def test_serve_reads_the_api_key_from_a_file(tmp_path, monkeypatch, how):
    import typer
    from typer.testing import CliRunner

    from engine.entrypoints.serve_cli import serve

    key = tmp_path / "key"
    key.write_text("file-key-9c1d\n")
    seen = {}
    monkeypatch.setattr("engine.entrypoints.api_server.run_server",
                        lambda config, server: seen.update(api_key=server.api_keys()))
    app = typer.Typer()
    app.command()(serve)
    argv, env = ["/models/m"], {}
    monkeypatch.delenv("ONENODE_API_KEY", raising=False)
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    if how == "flag":
        argv += ["--api-key-file", str(key)]
    else:
        env["ONENODE_API_KEY_FILE"] = str(key)
    res = CliRunner().invoke(app, argv, env=env)
    assert res.exit_code == 0, res.output
    assert seen["api_key"] == ("file-key-9c1d",)


def test_serve_takes_vllm_api_key_from_env(monkeypatch):
    import typer
    from typer.testing import CliRunner

    from engine.entrypoints.serve_cli import serve

    seen = {}
    monkeypatch.setattr("engine.entrypoints.api_server.run_server",
                        lambda config, server: seen.update(api_key=server.api_keys()))
    app = typer.Typer()
    app.command()(serve)
    res = CliRunner().invoke(app, ["/models/m"], env={"VLLM_API_KEY": "vllm-key-1"})
    assert res.exit_code == 0, res.output
    assert seen["api_key"] == ("vllm-key-1",)


@pytest.mark.slow
def test_sigterm_lets_streams_in_flight_finish(tiny_llama, tmp_path):
    """A normal stop cuts no stream: SIGTERM with 4 streams in flight, all 4 end with their full
    length, then the process exits 0."""
    import threading

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    log_path = tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "onenode.cli", "serve", str(tiny_llama), "--port", str(port),
           "--served-model-name", "tiny", "--max-model-len", "256", "--kv-cache-space-gib",
           "0.01", "--dtype", "float32", "--block-size", "8", "--shutdown-timeout", "60"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    url, started, results = f"http://127.0.0.1:{port}", threading.Semaphore(0), {}

    def one(i):
        body = {"model": "tiny", "prompt": "w5 w6", "max_tokens": 200, "stream": True,
                "ignore_eos": True, "temperature": 0, "stream_options": {"include_usage": True}}
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=120) as r:
            lines = []
            for line in r.iter_lines():
                if not lines:
                    started.release()
                lines.append(line)
        results[i] = lines

    try:
        _wait_healthy(url, proc, log_path)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for _ in threads:
            assert started.acquire(timeout=60)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(timeout=120)
        assert proc.wait(timeout=120) == 0, log_path.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Waiting for connections to close" in log_path.read_text()  # they were in flight
    for i in range(4):
        lines = [x for x in results[i] if x]
        usage = [json.loads(x[6:]) for x in lines if x.startswith("data: {")][-1]["usage"]
        assert lines[-1] == "data: [DONE]" and usage["completion_tokens"] == 200, i
