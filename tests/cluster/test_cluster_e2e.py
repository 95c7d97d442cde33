"""Real Docker, real containers, a real Ray cluster across them (marker `docker`)."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

from cluster import backend
from cluster.status import cluster_status
from tests.cluster.foreground import foreground_worker, stop_with_sigterm, wait_for

pytestmark = pytest.mark.docker
IMAGE = os.environ.get("ONENODE_TEST_IMAGE", "onenode:latest")


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
    args = [IMAGE, docker_cluster.head_ip, "--worker", str(cluster_hf_home),
            "--network", docker_cluster.network, "--ip", ip, "-e", f"VLLM_HOST_IP={ip}",
            "-e", f"HF_TOKEN={secret}", "--cap-add", "CAP_SYS_ADMIN", "--name", name,
            "--cluster-name", docker_cluster.name, "--shm-size", "1g", "--num-cpus", "1",
            "--object-store-memory", "128m", "--ray-token-file", docker_cluster.token_path,
            "--detach"]
    try:
        proc = _run_cluster(args)
        assert proc.returncode == 0, proc.stderr
        c = backend.client()
        before = backend.get(c, name)
        assert "CAP_SYS_ADMIN" in before.attrs["HostConfig"]["CapAdd"]
        capeff = int(sh(name, "grep", "CapEff", "/proc/1/status").split()[1], 16)
        assert capeff & (1 << 21)  # CAP_SYS_ADMIN
        again = _run_cluster(args)  # idempotent: same spec is left alone
        assert again.returncode == 0 and "left alone" in again.stderr
        changed = _run_cluster(args + ["-e", "NCCL_DEBUG=INFO"])  # a different spec: refused
        assert changed.returncode == 2 and "--replace" in changed.stderr
        assert backend.get(c, name).id == before.id  # left running as it was
        status = subprocess.run([sys.executable, "-m", "onenode.cli", "cluster", "status",
                                 "--name", docker_cluster.name, "--json"],
                                capture_output=True, text=True, timeout=120)
        for text in (proc.stdout, proc.stderr, again.stderr, changed.stderr, status.stdout,
                     status.stderr):
            assert secret not in text
        assert any(r["name"] == name for r in json.loads(status.stdout))
    finally:
        backend.remove(backend.client(), name, timeout=1)


@pytest.mark.parametrize("token", ["wrong", "missing"])
def test_worker_without_the_right_token_is_refused(docker_cluster, cluster_hf_home, tmp_path,
                                                   token):
    if token == "wrong":
        wrong = tmp_path / "wrong_token"
        wrong.write_text("not-the-token")
        wrong.chmod(0o600)
        auth = ["--ray-token-file", str(wrong)]
    else:  # a worker started with auth off, against a head that requires it
        auth = ["--no-ray-auth"]
    ip = docker_cluster.head_ip.rsplit(".", 1)[0] + (".41" if token == "wrong" else ".44")
    proc = _run_cluster([IMAGE, docker_cluster.head_ip, "--worker",
                         str(cluster_hf_home), "--network", docker_cluster.network, "--ip", ip,
                         "-e", f"VLLM_HOST_IP={ip}", "--cluster-name", docker_cluster.name,
                         "--shm-size", "1g", "--detach", "--ready-timeout", "60", *auth])
    assert proc.returncode == 2, proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert "Ray token does not match" in error and "Traceback" not in proc.stderr
    assert backend.get(backend.client(), f"{docker_cluster.name}-worker-{ip}") is None
    nodes = sh(docker_cluster.head, "ray", "list", "nodes", "--format", "json")
    assert ip not in {n["node_ip"] for n in json.loads(nodes[nodes.index("["):])}


def _onenode(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onenode.cli", *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def test_cli_up_kill_status_down(docker_required, cluster_hf_home):
    """The `onenode cluster` commands end to end on a second, 2-node cluster: a killed worker
    reads dead within 30 s, a secret given with -e never shows, `down` leaves nothing."""
    from cluster.local import down

    name = f"onkill-{uuid.uuid4().hex[:6]}"
    secret = f"hf_{uuid.uuid4().hex}"
    try:
        up = _onenode("cluster", "up", "--nodes", "2", "--name", name, "--image", IMAGE,
                      "--hf-home", str(cluster_hf_home), "--cpus-per-node", "1",
                      "--object-store-memory", "128m", "--api-port", "0", "-e",
                      f"HF_TOKEN={secret}")
        assert up.returncode == 0, up.stderr
        rows = json.loads(_onenode("cluster", "status", "--name", name, "--json").stdout)
        assert [(r["role"], r["alive"]) for r in rows] == [("head", True), ("worker", True)]
        assert rows[0]["ray_version"] and rows[0]["cpus"] == 1
        worker = rows[1]["name"]
        assert sh(worker, "printenv", "HF_TOKEN").strip() == secret  # it reached the node...
        subprocess.run(["docker", "kill", worker], check=True, capture_output=True)
        deadline = time.monotonic() + 30
        while any(r["alive"] for r in cluster_status(name) if r["name"] == worker):
            assert time.monotonic() < deadline, "killed worker still reads alive after 30 s"
            time.sleep(1)
        table = _onenode("cluster", "status", "--name", name)
        for text in (up.stdout, up.stderr, table.stdout, table.stderr):
            assert secret not in text  # ...but no onenode output shows it
        assert worker in table.stdout
        gone = _onenode("cluster", "down", "--name", name)
        assert gone.returncode == 0 and "removed 2 container(s)" in gone.stderr
    finally:
        down(name)
    c = backend.client()
    assert backend.list_cluster(c, name) == []
    assert backend.get_network(c, f"{name}-net") is None


def test_replace_recreates_a_node_whose_spec_changed(docker_cluster, cluster_hf_home):
    ip = docker_cluster.head_ip.rsplit(".", 1)[0] + ".42"
    name = f"{docker_cluster.name}-worker-{ip}"
    args = [IMAGE, docker_cluster.head_ip, "--worker", str(cluster_hf_home), "--network",
            docker_cluster.network, "--ip", ip, "-e", f"VLLM_HOST_IP={ip}", "--cluster-name",
            docker_cluster.name, "--shm-size", "1g", "--num-cpus", "1", "--object-store-memory",
            "128m", "--ray-token-file", docker_cluster.token_path, "--detach"]
    c = backend.client()
    try:
        assert _run_cluster(args).returncode == 0
        first = backend.get(c, name).id
        proc = _run_cluster(args + ["-e", "GLOO_SOCKET_IFNAME=eth0", "--replace"])
        assert proc.returncode == 0, proc.stderr
        assert backend.get(c, name).id != first
        assert sh(name, "printenv", "GLOO_SOCKET_IFNAME").strip() == "eth0"
    finally:
        backend.remove(c, name, timeout=1)


def test_foreground_node_is_removed_on_sigterm(docker_cluster, cluster_hf_home):
    with foreground_worker(IMAGE, docker_cluster, cluster_hf_home, 43) as (proc, name, lines):
        # the node's own log follows once it is ready
        wait_for(lambda: any("following its logs" in x for x in lines), 300, lines)
        assert backend.get(backend.client(), name).status == "running", "".join(lines)
        stop_with_sigterm(proc, name)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_preflight_errors_name_the_fix(docker_cluster, cluster_hf_home, tmp_path):
    # a unique --name: these must never touch a real onenode-head running on this machine
    token = ["--ray-token-file", docker_cluster.token_path, "--name", f"{docker_cluster.name}-pre"]
    missing = _run_cluster(["onenode:does-not-exist", "10.0.0.1", "--head", str(cluster_hf_home)]
                           + token)
    assert missing.returncode == 2 and "onenode image build" in missing.stderr
    no_hf = _run_cluster([IMAGE, "10.0.0.1", "--head", str(tmp_path / "nope")] + token)
    assert no_hf.returncode == 2 and "HF_HOME" in no_hf.stderr
    not_mine = _run_cluster([IMAGE, "127.0.0.1", "--worker", str(cluster_hf_home), "-e",
                             "VLLM_HOST_IP=10.255.255.254"] + token)
    assert not_mine.returncode == 2 and "not an address of this host" in not_mine.stderr
    if _port_free(6379):  # host networking: the head's GCS must answer from this host
        no_head = _run_cluster([IMAGE, "127.0.0.1", "--worker", str(cluster_hf_home),
                                "--ready-timeout", "2"] + token)
        assert no_head.returncode == 2 and "did not answer" in no_head.stderr
    no_token = _run_cluster([IMAGE, "127.0.0.1", "--worker", str(cluster_hf_home),
                             "--ray-token-file", str(tmp_path / "absent")])
    assert no_token.returncode == 2 and "token" in no_token.stderr
    for proc in (missing, no_hf, not_mine, no_token):
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_cluster_up_mounts_hf_home_by_default(docker_required, tmp_path):
    """No --hf-home: the node mounts $HF_HOME, and a hub id cached there resolves inside the
    container to the snapshot that refs/main names (huggingface_hub's layout)."""
    from cluster.local import down
    from onenode import names
    from tests.engine.tiny_models import make_llama

    snapshot = tmp_path / "hub" / "models--acme--tiny" / "snapshots" / ("0a" * 20)
    make_llama(snapshot, num_layers=1)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0a" * 20)
    for d in [tmp_path, *tmp_path.rglob("*")]:
        d.chmod(0o755 if d.is_dir() else 0o644)
    name = f"onhf-{uuid.uuid4().hex[:6]}"
    try:
        up = _onenode("cluster", "up", "--nodes", "1", "--name", name, "--image", IMAGE,
                      "--cpus-per-node", "1", "--object-store-memory", "128m",
                      "--api-port", "0", env={"HF_HOME": str(tmp_path)})
        assert up.returncode == 0, up.stderr
        out = sh(names.head_container(name), "env", "HF_HUB_OFFLINE=1", "python", "-c",
                 "from engine.model_source import resolve_model; "
                 "print(resolve_model('acme/tiny').path)")
        assert out.strip().endswith("/root/.cache/huggingface/hub/models--acme--tiny/snapshots/"
                                    + "0a" * 20), out
    finally:
        down(name)


def test_no_ray_auth_turns_auth_off_explicitly(docker_required, cluster_hf_home):
    """--no-ray-auth sets RAY_AUTH_MODE=disabled (the pinned Ray turns token auth on by itself
    when it finds a token) and warns; the node works without any token."""
    from cluster.local import down
    from onenode import names

    name = f"onnoauth-{uuid.uuid4().hex[:6]}"
    try:
        up = _onenode("cluster", "up", "--nodes", "1", "--name", name, "--image", IMAGE,
                      "--hf-home", str(cluster_hf_home), "--cpus-per-node", "1",
                      "--object-store-memory", "128m", "--api-port", "0", "--no-ray-auth")
        assert up.returncode == 0, up.stderr
        assert "Ray token auth is off" in up.stderr
        head = names.head_container(name)
        assert sh(head, "printenv", "RAY_AUTH_MODE").strip() == "disabled"
        deadline = time.monotonic() + 30  # `ray status` needs the autoscaler's first report
        while backend.exec_in(backend.client(), head, ["ray", "status"])[0] != 0:
            assert time.monotonic() < deadline, "ray status failed for 30 s without a token"
            time.sleep(1)
    finally:
        down(name)
