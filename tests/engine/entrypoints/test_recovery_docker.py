"""The served engine heals across the simulated hosts (marker `docker`): PP=3, one stage per
container. Crash = SIGKILL of a container's main PID from the host; Docker's restart policy brings
the container back, the engine rebuilds itself, and the greedy answer is the same as before.
The tests share one cluster and run in order (worker crash, head crash, operator stop, SIGTERM);
each first waits (bounded) until the service is healthy."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from cluster import backend

pytestmark = [pytest.mark.docker, pytest.mark.slow]
HF = "/root/.cache/huggingface"
IMAGE = os.environ.get("ONENODE_TEST_IMAGE", "onenode:latest")
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def health(port: int) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).status, ""
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except OSError:
        return 0, ""


def wait_health(port: int, want: int, timeout: float) -> float:
    start = time.monotonic()
    while health(port)[0] != want:
        assert time.monotonic() - start < timeout, f"/health not {want} within {timeout:.0f}s"
        time.sleep(0.5)
    return time.monotonic() - start


def crash(container: str) -> None:
    pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", container], check=True,
                         capture_output=True, text=True).stdout.strip()
    os.kill(int(pid), signal.SIGKILL)


def wait_running_again(container: str, restarts_before: int, timeout: float = 60) -> float:
    c, start = backend.client(), time.monotonic()
    while True:
        x = backend.get(c, container)
        if x.status == "running" and backend.restart_count(x) > restarts_before:
            return time.monotonic()
        assert time.monotonic() - start < timeout, f"{container} did not come back"
        time.sleep(0.5)


def chat(port: int, max_tokens: int = 20) -> str:
    from openai import OpenAI

    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0,
                    timeout=120)
    reply = client.chat.completions.create(model="smol", messages=QUESTION,
                                           max_tokens=max_tokens, temperature=0)
    return reply.choices[0].message.content


def stream(port: int, outcome: dict, key, max_tokens: int = 900) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0,
                    timeout=300)
    try:
        chunks = client.completions.create(model="smol", prompt="Count: 1, 2, 3,",
                                           max_tokens=max_tokens, stream=True, temperature=0,
                                           extra_body={"ignore_eos": True})
        finish = [c.choices[0].finish_reason for c in chunks if c.choices]
        outcome[key] = ("ok", finish[-1] if finish else None, time.monotonic())
    except Exception as exc:  # noqa: BLE001 - any error ends it: that is what is measured
        outcome[key] = (type(exc).__name__, None, time.monotonic())


@pytest.fixture(scope="module")
def healing(docker_required, cluster_hf_home):
    from cluster.local import down, up
    from engine.demo_model import MODEL_DIR
    from onenode.net import free_port

    name = f"onrec-{uuid.uuid4().hex[:6]}"
    port = free_port("127.0.0.1")
    try:
        info = up(3, name=name, image=IMAGE, hf_home=cluster_hf_home, cpus_per_node=1,
                  object_store_memory="128m", api_port=port)
        cmd = [sys.executable, "-m", "onenode.cli", "cluster", "serve", f"{HF}/{MODEL_DIR}",
               "--name", name, "--port", str(port), "--detach", "--pipeline-parallel-size", "3",
               "--max-model-len", "1024", "--kv-cache-space-gib", "0.25",
               "--served-model-name", "smol"]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True,
                              timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        yield info, chat(port)
    finally:
        down(name)


def test_worker_crash_fails_the_stream_then_heals(healing):
    info, answer = healing
    port, worker = info.api_port, info.nodes[2][0]
    assert "Paris" in answer
    outcome = {}
    t = threading.Thread(target=stream, args=(port, outcome, "s"))
    t.start()
    time.sleep(3)
    before = backend.restart_count(backend.get(backend.client(), worker))
    crash(worker)
    killed = time.monotonic()
    t.join(timeout=30)
    assert not t.is_alive(), "the in-flight stream hung"
    assert outcome["s"][0] != "ok" and outcome["s"][2] - killed < 10, outcome
    code, body = health(port)
    assert code == 503 and ("recovering" in body or "degraded" in body), body
    returned = wait_running_again(worker, before)
    wait_health(port, 200, 90 - (time.monotonic() - returned))
    assert chat(port) == answer
    status = subprocess.run([sys.executable, "-m", "onenode.cli", "cluster", "status", "--name",
                             info.name, "--json"], check=True, capture_output=True, text=True)
    rows = {r["name"]: r for r in json.loads(status.stdout)}
    assert rows[worker]["restarts"] >= 1 and rows[info.head]["serving"] == "serving", rows


def test_head_crash_heals_and_ray_lists_three_nodes(healing):
    info, answer = healing
    wait_health(info.api_port, 200, 120)
    before = backend.restart_count(backend.get(backend.client(), info.head))
    crash(info.head)
    # SIGKILL of PID 1 tears the container's other processes down asynchronously: the old server
    # can still answer /health 200 for a moment, so wait for the restarted container first.
    wait_running_again(info.head, before, timeout=120)
    wait_health(info.api_port, 200, 300)
    assert chat(info.api_port) == answer
    out = backend.exec_in(backend.client(), info.head, ["ray", "status"])[1]
    assert out.split("Active:")[1].split("Pending:")[0].count("node_") == 3, out


def test_worker_stopped_by_the_operator_stays_down_and_health_says_so(healing):
    info, _ = healing
    worker, c = info.nodes[1][0], backend.client()
    wait_health(info.api_port, 200, 120)
    subprocess.run(["docker", "stop", "-t", "5", worker], check=True, capture_output=True)
    try:
        wait_health(info.api_port, 503, 20)
        time.sleep(5)
        assert backend.get(c, worker).status == "exited"
        code, body = health(info.api_port)
        assert code == 503 and "retry" in body, body
    finally:
        subprocess.run(["docker", "start", worker], check=True, capture_output=True)
    wait_health(info.api_port, 200, 180)


def test_sigterm_drains_four_streams_in_flight(healing):
    info, _ = healing
    wait_health(info.api_port, 200, 120)
    outcome = {}
    threads = [threading.Thread(target=stream, args=(info.api_port, outcome, i, 40))
               for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)
    stop = subprocess.run([sys.executable, "-m", "onenode.cli", "cluster", "serve-stop",
                           "--name", info.name], check=False, capture_output=True, text=True,
                          timeout=60)
    assert stop.returncode == 0, stop.stderr
    for t in threads:
        t.join(timeout=120)
    assert [outcome[i][:2] for i in range(4)] == [("ok", "length")] * 4, outcome
