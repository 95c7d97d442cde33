"""Real Docker, real containers, a real Ray cluster across them (marker `docker`)."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

from cluster import backend
from cluster.status import cluster_status

pytestmark = pytest.mark.docker


def sh(container: str, *cmd: str) -> str:
    c = backend.client()
    code, out = backend.exec_in(c, container, list(cmd))
    assert code == 0, out
    return out


def test_ray_status_in_head_lists_every_node(docker_cluster):
    deadline = time.monotonic() + 30
    while True:
        out = sh(docker_cluster.head, "ray", "status")
        active = out.split("Active:")[1].split("Pending:")[0]
        if active.count("node_") == 3 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert active.count("node_") == 3, out


@pytest.mark.parametrize("where", ["head", "worker"])
def test_ray_list_nodes_shows_distinct_ips(docker_cluster, where):
    container = docker_cluster.head if where == "head" else docker_cluster.nodes[1][0]
    out = sh(container, "ray", "list", "nodes", "--format", "json")
    ips = {n["node_ip"] for n in json.loads(out[out.index("["):]) if n["state"] == "ALIVE"}
    assert ips == {ip for _, ip in docker_cluster.nodes}


def test_dashboard_refuses_requests_without_the_token(docker_cluster):
    url = f"http://{docker_cluster.head_ip}:8265/api/version"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(url, timeout=10)
    assert err.value.code == 401
    token = open(docker_cluster.token_path).read().strip()
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    assert urllib.request.urlopen(req, timeout=10).status == 200


def test_env_given_at_creation_reaches_every_container(docker_cluster):
    for name, ip in docker_cluster.nodes:
        assert sh(name, "printenv", "NCCL_SOCKET_IFNAME").strip() == "eth0"
        assert sh(name, "printenv", "VLLM_HOST_IP").strip() == ip


def _run_cluster(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cluster.run_cluster", *args],
                          capture_output=True, text=True, timeout=180)


def test_extra_worker_caps_and_secrets(docker_cluster, cluster_hf_home):
    ip = docker_cluster.head_ip.rsplit(".", 1)[0] + ".40"
    name = f"{docker_cluster.name}-extra"
    secret = f"hf_{uuid.uuid4().hex}"
    args = ["onenode:latest", docker_cluster.head_ip, "--worker", str(cluster_hf_home),
            "--network", docker_cluster.network, "--ip", ip, "-e", f"VLLM_HOST_IP={ip}",
            "-e", f"HF_TOKEN={secret}", "--cap-add", "CAP_SYS_ADMIN", "--name", name,
            "--cluster-name", docker_cluster.name, "--shm-size", "1g", "--num-cpus", "1",
            "--object-store-memory", "128m", "--ray-token-file", docker_cluster.token_path,
            "--detach"]
    try:
        proc = _run_cluster(args)
        assert proc.returncode == 0, proc.stderr
        c = backend.client()
        assert "CAP_SYS_ADMIN" in backend.get(c, name).attrs["HostConfig"]["CapAdd"]
        capeff = int(sh(name, "grep", "CapEff", "/proc/1/status").split()[1], 16)
        assert capeff & (1 << 21)  # CAP_SYS_ADMIN
        again = _run_cluster(args)  # idempotent: same spec is left alone
        assert again.returncode == 0 and "left alone" in again.stderr
        status = subprocess.run([sys.executable, "-m", "cluster.main", "cluster", "status",
                                 "--name", docker_cluster.name, "--json"],
                                capture_output=True, text=True, timeout=120)
        for text in (proc.stdout, proc.stderr, again.stderr, status.stdout, status.stderr):
            assert secret not in text
        assert any(r["name"] == name for r in json.loads(status.stdout))
    finally:
        backend.remove(backend.client(), name, timeout=1)


def test_worker_with_a_wrong_token_is_refused(docker_cluster, cluster_hf_home, tmp_path):
    wrong = tmp_path / "wrong_token"
    wrong.write_text("not-the-token")
    wrong.chmod(0o600)
    ip = docker_cluster.head_ip.rsplit(".", 1)[0] + ".41"
    proc = _run_cluster(["onenode:latest", docker_cluster.head_ip, "--worker",
                         str(cluster_hf_home), "--network", docker_cluster.network, "--ip", ip,
                         "-e", f"VLLM_HOST_IP={ip}", "--cluster-name", docker_cluster.name,
                         "--shm-size", "1g", "--ray-token-file", str(wrong), "--detach",
                         "--ready-timeout", "60"])
    assert proc.returncode == 2
    assert "token" in proc.stderr and "Traceback" not in proc.stderr
    assert backend.get(backend.client(), f"{docker_cluster.name}-worker-{ip}") is None


def test_killed_worker_shows_dead_and_down_cleans_up(docker_required, cluster_hf_home):
    from cluster.local import down, up

    name = f"onkill-{uuid.uuid4().hex[:6]}"
    try:
        info = up(2, name=name, hf_home=cluster_hf_home, cpus_per_node=1,
                  object_store_memory="128m")
        worker = info.nodes[1][0]
        subprocess.run(["docker", "kill", worker], check=True, capture_output=True)
        deadline = time.monotonic() + 30
        rows = cluster_status(name)
        while any(r["alive"] for r in rows if r["name"] == worker):
            assert time.monotonic() < deadline, rows
            time.sleep(1)
            rows = cluster_status(name)
    finally:
        down(name)
    c = backend.client()
    assert backend.list_cluster(c, name) == []
    assert backend.get_network(c, f"{name}-net") is None
