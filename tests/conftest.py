"""Session fixtures shared by the Docker end-to-end tests: one real 3-node cluster (head + 2
workers) on a project bridge network, with the demo model under its HF_HOME. Every docker test
uses it through `docker_cluster`; it is always removed at the end, even on failure."""

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

# Tests reach only loopback and the project's containers: a hub id that is not cached must fail
# fast with onenode's error, never try huggingface.co. Set before huggingface_hub is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def docker_ok() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def docker_required():
    if not docker_ok():
        if os.environ.get("ONENODE_REQUIRE_DOCKER") == "1":
            pytest.fail("Docker is required (ONENODE_REQUIRE_DOCKER=1) but `docker info` fails; "
                        "run scripts/ensure_docker.sh")
        pytest.skip("no Docker engine here (make test installs and starts one)")


@pytest.fixture(scope="session")
def demo_model_dir() -> Path:
    from engine.demo_model import fetch_demo

    return fetch_demo()


@pytest.fixture(scope="session")
def cluster_hf_home(tmp_path_factory, demo_model_dir) -> Path:
    """An HF_HOME for the test cluster holding the demo model (hard-linked, not copied)."""
    from engine.demo_model import GGUF_NAME, MODEL_DIR

    home = tmp_path_factory.mktemp("hf_home")
    target = home / MODEL_DIR
    target.mkdir(parents=True)
    try:
        os.link(demo_model_dir / GGUF_NAME, target / GGUF_NAME)
    except OSError:
        shutil.copy(demo_model_dir / GGUF_NAME, target / GGUF_NAME)
    home.chmod(0o755)
    return home


@pytest.fixture(scope="session")
def docker_cluster(docker_required, cluster_hf_home):
    from cluster.local import down, up

    name = f"ontest-{uuid.uuid4().hex[:6]}"
    try:
        info = up(3, name=name, image=os.environ.get("ONENODE_TEST_IMAGE", "onenode:latest"),
                  hf_home=cluster_hf_home, env={"NCCL_SOCKET_IFNAME": "eth0"},
                  cpus_per_node=2, object_store_memory="256m")
        yield info
    finally:
        down(name)
