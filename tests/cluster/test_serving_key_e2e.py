"""The serving key on real Docker (marker `docker`): `cluster up --api-key-file` mounts the key
read-only, `cluster serve` starts the API with it, and the key appears nowhere in `docker
inspect`, the container's logs, the server's log or what `cluster serve` prints."""

import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import pytest

from cluster import backend

pytestmark = [pytest.mark.docker, pytest.mark.slow]
IMAGE = os.environ.get("ONENODE_TEST_IMAGE", "onenode:latest")
HF = "/root/.cache/huggingface"


@pytest.fixture
def keyed_cluster(docker_required, cluster_hf_home, tmp_path):
    from cluster.local import down, up
    from onenode.net import free_port

    key = f"sk-onenode-{uuid.uuid4().hex}"
    key_file = tmp_path / "api_key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    name = f"onkey-{uuid.uuid4().hex[:6]}"
    try:
        info = up(1, name=name, image=IMAGE, hf_home=cluster_hf_home, cpus_per_node=1,
                  object_store_memory="128m", api_port=free_port("127.0.0.1"),
                  api_key_file=str(key_file))
        yield info, key
    finally:
        down(name)


def _status(port: int, key: str | None) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models",
                                 headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        return urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as err:
        return err.code


def test_api_key_file_reaches_the_server_and_nothing_shows_it(keyed_cluster, cluster_hf_home):
    from tests.engine.tiny_models import make_llama

    info, key = keyed_cluster
    path = make_llama(cluster_hf_home / "models" / f"key-llama-{info.name}", num_layers=2)
    for p in [path, *path.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    cmd = [sys.executable, "-m", "onenode.cli", "cluster", "serve",
           f"{HF}/models/{path.name}", "--name", info.name, "--port", str(info.api_port),
           "--detach", "--max-model-len", "64", "--kv-cache-space-gib", "0.01",
           "--dtype", "float32", "--served-model-name", "tiny"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    printed = proc.stdout + proc.stderr
    assert proc.returncode == 0, printed[-3000:]
    assert _status(info.api_port, None) == 401
    assert _status(info.api_port, "wrong-key") == 401
    assert _status(info.api_port, key) == 200

    inspect = subprocess.run(["docker", "inspect", info.head], capture_output=True, text=True,
                             check=True).stdout
    assert "/run/onenode/api_key" in inspect  # the mount is there, its content is not
    c = backend.client()
    container_logs = backend.logs_tail(backend.get(c, info.head), tail=5000)
    from cluster.serve import LOG

    server_log = backend.exec_in(c, info.head, ["cat", LOG])[1]
    assert "API key required" in server_log
    for where, text in (("docker inspect", inspect), ("container logs", container_logs),
                        ("server log", server_log), ("cluster serve output", printed)):
        assert key not in text, f"the API key leaked into {where}"
    # the process table of the head: no argv carries it either
    ps = backend.exec_in(c, info.head, ["ps", "-eo", "args"])[1]
    assert key not in ps and "--api-key " not in ps
