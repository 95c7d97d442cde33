"""Faults beyond clean crashes, across the simulated hosts (marker `docker`): PP=3 on the ray
backend, one stage per container, with `--step-timeout 10`.

- A worker's engine actor SIGSTOPped (alive, never answering): the stream in flight fails with the
  reason and /health turns 503 within the step deadline; the watchdog has Ray kill the actors
  and the engine rebuilds to the same greedy answer.
- A worker's network disconnected for 5 s (shorter than the 10 s partition grace): the streams in
  flight finish, no rebuild.
"""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from cluster import backend
from tests.engine.entrypoints.test_recovery_docker import (
    HF,
    IMAGE,
    chat,
    health,
    stream,
    wait_health,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]
STEP_TIMEOUT_S = 10


@pytest.fixture(scope="module")
def served(docker_required, cluster_hf_home):
    from cluster.local import down, up
    from engine.demo_model import MODEL_DIR
    from onenode.net import free_port

    name = f"onwd-{uuid.uuid4().hex[:6]}"
    port = free_port("127.0.0.1")
    try:
        info = up(3, name=name, image=IMAGE, hf_home=cluster_hf_home, cpus_per_node=1,
                  object_store_memory="128m", api_port=port)
        cmd = [sys.executable, "-m", "onenode.cli", "cluster", "serve", f"{HF}/{MODEL_DIR}",
               "--name", name, "--port", str(port), "--detach", "--pipeline-parallel-size", "3",
               "--max-model-len", "1024", "--kv-cache-space-gib", "0.25",
               "--served-model-name", "smol", "--step-timeout", str(STEP_TIMEOUT_S)]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        yield info, chat(port)
    finally:
        down(name)


def actor_pids(container: str) -> list[int]:
    """Host PIDs of the container's engine actors (Ray titles them ray::RayWorkerWrapper)."""
    out = subprocess.run(["docker", "top", container, "-eo", "pid,args"], check=True,
                         capture_output=True, text=True).stdout
    pids = [int(line.split()[0]) for line in out.splitlines()[1:]
            if "RayWorkerWrapper" in line]
    assert pids, out
    return pids


def restarts(port: int) -> float:
    import urllib.request

    from tests.engine.entrypoints.conftest import metric

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return metric(text, "onenode_engine_restarts_total")


def test_sigstopped_engine_actor_turns_health_503_and_heals(served):
    info, answer = served
    port, worker = info.api_port, info.nodes[2][0]
    wait_health(port, 200, 120)
    pids = actor_pids(worker)
    outcome = {}
    t = threading.Thread(target=stream, args=(port, outcome, "s", 900))
    t.start()
    time.sleep(3)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        assert "s" not in outcome, outcome  # still streaming when the worker stopped
        # The deadline is at least STEP_TIMEOUT_S; 4 x the slowest measured step may add a few.
        wait_health(port, 503, STEP_TIMEOUT_S + 15)
        code, body = health(port)
        assert code == 503 and "did not return within" in body, body
        t.join(timeout=30)
        assert not t.is_alive(), "the in-flight stream hung"
        assert outcome["s"][0] != "ok", outcome
        assert outcome["s"][2] - stopped < STEP_TIMEOUT_S + 20, outcome
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:  # killed by the watchdog's recovery: as intended
                pass
    wait_health(port, 200, 150)
    assert chat(port) == answer


def test_five_second_network_blip_finishes_the_streams_without_a_rebuild(served):
    info, _ = served
    port, (worker, ip) = info.api_port, info.nodes[1]
    wait_health(port, 200, 150)
    before = restarts(port)
    outcome = {}
    threads = [threading.Thread(target=stream, args=(port, outcome, i, 300)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(3)
    subprocess.run(["docker", "network", "disconnect", info.network, worker], check=True)
    try:
        time.sleep(5)
    finally:
        subprocess.run(["docker", "network", "connect", "--ip", ip, info.network, worker],
                       check=True)
    for t in threads:
        t.join(timeout=120)
    assert all(outcome.get(i, ("hung",))[0] == "ok" for i in range(4)), outcome
    assert health(port)[0] == 200 and restarts(port) == before
