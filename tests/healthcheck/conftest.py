"""Shared fixtures for the healthcheck tests."""

import contextlib
import os
import time

import pytest

from healthcheck.inventory import NodeInventory

VERSIONS = {"python": "3.11.2", "torch": "2.13.0+cpu", "ray": "2.60.0", "onenode": "0.1.0"}


def _inv(ip="10.0.0.1", hostname=None, **kw) -> NodeInventory:
    fields = dict(hostname=hostname or f"host-{ip}", ray_ip=ip, node_id=f"id-{ip}",
                  vllm_host_ip=ip, interfaces={"eth0": ip}, versions=dict(VERSIONS),
                  image_id="onenode:abc", gpus=[], driver={}, shm_bytes=8 << 30,
                  env={"VLLM_HOST_IP": ip}, secret_fingerprints={}, ib_ports=[], model=None)
    fields.update(kw)
    return NodeInventory(**fields)


@pytest.fixture
def inv():
    """Build a node inventory as plain data (for the pure verdict tests; the probes build the
    same objects on real nodes in the Ray and docker tests)."""
    return _inv


REPO = str(__import__("pathlib").Path(__file__).resolve().parents[2])
NODE_ARGS = {"num_cpus": 1, "object_store_memory": 80 << 20}


@contextlib.contextmanager
def environ(**env):
    """Environment for processes started inside the block (a raylet inherits it, and so do the
    probes it starts: that is how a node with a deviating `-e VAR=...` is simulated here)."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def local_ray():
    """A real multi-node Ray cluster on this machine: a head and two more raylets (all at one
    IP, so the healthcheck sees a simulated cluster)."""
    import ray
    from ray.cluster_utils import Cluster

    path = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
    with environ(PYTHONPATH=path):
        cluster = Cluster(initialize_head=True,
                          head_node_args={**NODE_ARGS, "include_dashboard": False})
        for _ in range(2):
            cluster.add_node(**NODE_ARGS)
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
        cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture
def extra_node(local_ray):
    """add(**env) starts one more raylet with that environment; it is removed afterwards."""
    added = []

    def add(**env):
        import ray

        with environ(**env):
            node = local_ray.add_node(**NODE_ARGS)
        deadline = time.monotonic() + 60
        while not any(n["NodeID"] == node.node_id and n["Alive"] for n in ray.nodes()):
            assert time.monotonic() < deadline, "the extra raylet did not join within 60s"
            time.sleep(0.2)
        added.append(node)
        return node

    yield add
    for node in added:
        for proc in node.all_processes.get("raylet", []):
            _signal(proc.process.pid, "SIGCONT")
        local_ray.remove_node(node, allow_graceful=False)


def _signal(pid, name):
    import signal

    try:
        os.kill(pid, getattr(signal, name))
    except ProcessLookupError:
        pass
