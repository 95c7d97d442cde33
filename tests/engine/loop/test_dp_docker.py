"""DP=3 across 3 containers (marker `docker`): one replica per node (Ray placement), 12 concurrent
greedy streams, SIGKILL a worker container's main process mid-stream; all 12 complete with the
uninterrupted text (their requests resume on live replicas), and once the container is back its
replica rebuilds and rejoins (the metrics show it serving again)."""

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]
HF = "/root/.cache/huggingface"
IMAGE = os.environ.get("ONENODE_TEST_IMAGE", "onenode:latest")
STREAMS, MAX_TOKENS = 12, 128


@pytest.fixture
def dp_cluster(docker_required, cluster_hf_home):
    from cluster.local import down, up
    from engine.demo_model import MODEL_DIR
    from onenode.net import free_port

    name = f"ondp-{uuid.uuid4().hex[:6]}"
    port = free_port("127.0.0.1")
    try:
        info = up(3, name=name, image=IMAGE, hf_home=cluster_hf_home, cpus_per_node=1,
                  object_store_memory="128m", api_port=port)
        cmd = [sys.executable, "-m", "onenode.cli", "cluster", "serve", f"{HF}/{MODEL_DIR}",
               "--name", name, "--port", str(port), "--detach", "--data-parallel-size", "3",
               "--data-parallel-backend", "ray", "--max-model-len", "512",
               "--kv-cache-space-gib", "0.1", "--served-model-name", "smol"]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=400)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        yield info
    finally:
        down(name)


def stream(port: int, i: int) -> str:
    from openai import OpenAI

    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0,
                    timeout=240)
    chunks = client.completions.create(model="smol", prompt=f"Story {i}: once upon a time",
                                       max_tokens=MAX_TOKENS, stream=True, temperature=0,
                                       extra_body={"ignore_eos": True})
    return "".join(c.choices[0].text for c in chunks if c.choices)


def metrics(port: int) -> str:
    import urllib.request

    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def replica_states(port: int) -> dict[str, str]:
    text = metrics(port)
    found = re.findall(r'onenode_replica_state\{[^}]*replica="(\d)",state="(\w+)"\} 1\.0', text)
    return dict(found)


def test_dp3_streams_survive_a_worker_container_crash_and_the_replica_rejoins(dp_cluster):
    from cluster import backend

    port, worker = dp_cluster.api_port, dp_cluster.nodes[2][0]
    assert replica_states(port) == {"0": "serving", "1": "serving", "2": "serving"}
    with ThreadPoolExecutor(STREAMS) as pool:
        reference = list(pool.map(lambda i: stream(port, i), range(STREAMS)))
        restarts = backend.restart_count(backend.get(backend.client(), worker))
        futures = [pool.submit(stream, port, i) for i in range(STREAMS)]
        time.sleep(2)  # every stream is decoding
        pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", worker], check=True,
                             capture_output=True, text=True).stdout.strip()
        os.kill(int(pid), signal.SIGKILL)
        texts = [f.result(timeout=240) for f in futures]
    assert texts == reference
    moved = re.search(r"onenode_request_migrations_total\{[^}]*\} (\S+)", metrics(port))
    assert moved and float(moved.group(1)) > 0, "no request was running on the killed replica"
    assert "serving" in replica_states(port).values()
    deadline = time.monotonic() + 150
    while True:  # the container restarts, its replica rebuilds on it and rejoins
        states = replica_states(port)
        if list(states.values()) == ["serving"] * 3 and backend.restart_count(
                backend.get(backend.client(), worker)) > restarts:
            break
        assert time.monotonic() < deadline, f"replica did not rejoin: {states}"
        time.sleep(1)
    assert stream(port, 0) == reference[0]
