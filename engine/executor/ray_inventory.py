"""Talking to the Ray cluster for the ray executor: connect, read per-node devices, wait (bounded)
until the planned placement fits."""

import time

from engine.parallel.placement import (
    NodeDevices,
    insufficient_message,
    place_ranks_on_nodes,
)
from onenode.errors import ClusterError, ResourceError


def connect():
    """Use the Ray runtime already initialized in this process, else join the running cluster."""
    import ray

    if not ray.is_initialized():
        try:
            ray.init(address="auto", log_to_driver=True, logging_level="WARNING")
        except ConnectionError:
            raise ClusterError(
                "no running Ray cluster found (ray.init(address='auto') failed); start one with "
                "`run_cluster IMAGE HEAD_IP --head ...` and run inside a cluster container, or "
                "use --distributed-executor-backend mp on a single node") from None
    return ray


def device_kind(requested: str) -> str:
    """GPU bundles on GPU clusters, CPU bundles on CPU-only ones."""
    if requested == "cpu":
        return "CPU"
    import ray

    has_gpu = ray.cluster_resources().get("GPU", 0) > 0
    if requested == "cuda" and not has_gpu:
        raise ResourceError("device=cuda but the Ray cluster reports no GPUs; start the nodes "
                            "with `--gpus all` (run_cluster does when NVML sees GPUs)")
    return "GPU" if has_gpu else "CPU"


def inventory(kind: str) -> list[NodeDevices]:
    import ray

    free = {}
    per_node_avail = _available_per_node()
    for node in ray.nodes():
        if not node["Alive"]:
            continue
        ip = node["NodeManagerAddress"]
        total = int(node["Resources"].get(kind, 0))
        avail = int(per_node_avail.get(node["NodeID"], {}).get(kind, total))
        free[ip] = NodeDevices(ip=ip, free=avail, total=total)
    return list(free.values())


def _available_per_node() -> dict:
    try:
        from ray._private.state import state

        return state._available_resources_per_node()
    except Exception:  # noqa: BLE001 - private API; fall back to totals
        return {}


def wait_for_placement(tp: int, pp: int, kind: str, wait_s: float) -> list[str]:
    """Node IP per rank, waiting up to wait_s for nodes to join or free up."""
    import ray

    driver_ip = ray.util.get_node_ip_address()
    deadline = time.monotonic() + wait_s
    while True:
        nodes = inventory(kind)
        try:
            return place_ranks_on_nodes(tp, pp, nodes, driver_ip, kind)
        except ResourceError:
            if time.monotonic() >= deadline:
                raise ResourceError(insufficient_message(tp, pp, nodes, kind) +
                                    f" (waited {wait_s:.0f}s)") from None
        time.sleep(1.0)
