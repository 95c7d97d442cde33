"""Nodes heal by their restart policy (marker `docker`): a SIGKILLed worker comes back and rejoins,
a SIGKILLed head comes back at its address with its token and the workers find it again, a worker
stopped by the operator stays down. Crash = SIGKILL of the container's main PID from the host."""

import os
import signal
import subprocess
import time
import uuid

import pytest

from cluster import backend
from cluster.status import cluster_status
from tests.cluster.foreground import foreground_worker, stop_with_sigterm, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.slow]
IMAGE = os.environ.get("ONENODE_TEST_IMAGE", "onenode:latest")


def crash(container: str) -> None:
    pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", container], check=True,
                         capture_output=True, text=True).stdout.strip()
    os.kill(int(pid), signal.SIGKILL)


def restarts(container: str) -> int:
    c = backend.client()
    return backend.restart_count(backend.get(c, container))


def wait_alive_nodes(name: str, want: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        rows = cluster_status(name)
        if sum(r["alive"] for r in rows) == want or time.monotonic() > deadline:
            return rows
        time.sleep(2)


@pytest.fixture(scope="module")
def heal_cluster(docker_required, cluster_hf_home):
    from cluster.local import down, up

    name = f"onheal-{uuid.uuid4().hex[:6]}"
    try:
        yield up(3, name=name, image=IMAGE, hf_home=cluster_hf_home, cpus_per_node=1,
                 object_store_memory="128m")
    finally:
        down(name)


def test_crashed_worker_restarts_and_rejoins(heal_cluster):
    worker = heal_cluster.nodes[1][0]
    crash(worker)
    rows = wait_alive_nodes(heal_cluster.name, 2, 30)  # Ray notices the loss first
    assert sum(r["alive"] for r in rows) <= 3
    rows = wait_alive_nodes(heal_cluster.name, 3, 90)
    assert all(r["alive"] for r in rows), rows
    assert restarts(worker) >= 1
    assert next(r for r in rows if r["name"] == worker)["restarts"] >= 1


def test_crashed_head_comes_back_and_workers_find_it(heal_cluster):
    head = heal_cluster.head
    crash(head)
    time.sleep(5)
    rows = wait_alive_nodes(heal_cluster.name, 3, 180)
    assert all(r["alive"] for r in rows), rows
    assert restarts(head) >= 1
    deadline = time.monotonic() + 60  # `ray status` (the autoscaler's view) lags ray.nodes()
    while True:
        out = backend.exec_in(backend.client(), head, ["ray", "status"])[1]
        active = out.split("Active:")[1].split("Pending:")[0] if "Active:" in out else ""
        if active.count("node_") == 3 or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert active.count("node_") == 3, out
    # Same address, same token: the workers log their wait and rejoin by themselves.
    logs = backend.logs_tail(backend.get(backend.client(), heal_cluster.nodes[2][0]), 2000)
    assert "waiting for the head" in logs or "answers" in logs


def test_foreground_node_comes_back_and_sigterm_still_removes_it(heal_cluster,
                                                                  cluster_hf_home):
    """run_cluster in the foreground: a crash is healed by the restart policy while the command
    keeps following the logs; SIGTERM (Ctrl-C) still stops and removes the node."""
    with foreground_worker(IMAGE, heal_cluster, cluster_hf_home, 44) as (proc, name, lines):
        c = backend.client()
        wait_for(lambda: any("following its logs" in x for x in lines), 120, lines)
        crash(name)
        wait_for(lambda: any("restart policy brings it back" in x for x in lines), 60, lines)
        wait_for(lambda: backend.get(c, name).status == "running", 60, lines)
        assert proc.poll() is None and restarts(name) >= 1
        stop_with_sigterm(proc, name)


def test_head_started_server_comes_back_with_the_head(heal_cluster, cluster_hf_home, tmp_path):
    """`run_cluster --head --serve`: the server runs under the head's supervisor, so after a
    crash of the head container it answers again with no command typed."""
    import sys
    import urllib.error
    import urllib.request

    from engine.demo_model import container_model_dir

    info = heal_cluster
    ip = info.head_ip.rsplit(".", 1)[0] + ".45"
    name = f"{info.name}-solo-head"
    c = backend.client()

    def healthy() -> bool:
        try:
            return urllib.request.urlopen(f"http://{ip}:8000/health", timeout=3).status == 200
        except (urllib.error.URLError, OSError):
            return False

    key_file = tmp_path / "api_key"
    key_file.write_text("test-key-1234\n")
    key_file.chmod(0o644)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "cluster.run_cluster", IMAGE, ip, "--head",
             str(cluster_hf_home), "--network", info.network, "--ip", ip, "--name", name,
             "--cluster-name", f"{info.name}-solo", "--shm-size", "1g", "--num-cpus", "1",
             "--object-store-memory", "128m", "--ray-token-file", info.token_path, "--detach",
             "--serve", container_model_dir(), "--api-key-file", str(key_file), "--serve-args",
             "--max-model-len 256 --kv-cache-space-gib 0.05"],
            check=False, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        wait_for(healthy, 240, [])
        crash(name)
        time.sleep(3)
        wait_for(healthy, 240, [])
        assert restarts(name) >= 1
        logs = backend.exec_in(c, name, ["cat", "/var/log/onenode/serve.log"])[1]
        assert logs.count("Uvicorn running") >= 2 and "test-key-1234" not in logs
    finally:
        backend.remove(c, name, timeout=1)


def test_worker_stopped_by_the_operator_stays_down(heal_cluster):
    worker = heal_cluster.nodes[2][0]
    subprocess.run(["docker", "stop", "-t", "5", worker], check=True, capture_output=True)
    time.sleep(8)
    c = backend.client()
    assert backend.get(c, worker).status == "exited"
    rows = wait_alive_nodes(heal_cluster.name, 2, 30)
    assert not next(r for r in rows if r["name"] == worker)["alive"]
