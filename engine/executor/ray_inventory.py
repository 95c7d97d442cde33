"""Talking to the Ray cluster for the ray executor: connect, read per-node devices, wait (bounded)
until the planned placement fits."""

import os
import time

from engine.logger import init_logger
from engine.parallel.placement import (
    NodeDevices,
    insufficient_message,
    place_ranks_on_nodes,
    replica_first_node,
)
from onenode.errors import ClusterError, ResourceError

TESTED_RAY = ">=2.52,<2.61"  # pyproject.toml's cap
log = init_logger("onenode.ray")


# Set when connect() started a Ray instance of its own (no cluster to join), so the executor
# knows no node will join while it waits, and stops that instance at shutdown.
started_local = False


def connect():
    """Use the Ray runtime already initialized in this process, else join the running cluster,
    else (vLLM's behaviour) start a local Ray instance on this machine."""
    import ray

    if ray.is_initialized():
        return ray
    try:
        ray.init(address="auto", log_to_driver=True, logging_level="WARNING")
    except ConnectionError:
        if os.environ.get("RAY_ADDRESS"):
            raise ClusterError(
                f"cannot reach the Ray cluster at RAY_ADDRESS={os.environ['RAY_ADDRESS']}; start "
                f"it (`run_cluster IMAGE HEAD_IP --head ...`) or unset RAY_ADDRESS to run on a "
                f"local Ray instance") from None
        _start_local(ray)
    return ray


def _start_local(ray) -> None:
    global started_local
    # Loopback only: a Ray started here must not be reachable from other machines.
    ray.init(include_dashboard=False, log_to_driver=True, logging_level="WARNING",
             _node_ip_address="127.0.0.1")
    started_local = True
    res = ray.cluster_resources()
    log.info("no Ray cluster to join: started a local Ray instance (%d CPUs, %d GPUs) as vLLM "
             "does; join a cluster with `run_cluster` to use several nodes",
             int(res.get("CPU", 0)), int(res.get("GPU", 0)))


def stop_local() -> None:
    global started_local
    if started_local:
        import ray

        ray.shutdown()
        started_local = False


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
        # Ray leaves a fully used resource out of a node's available dict: absent means 0 there;
        # a node absent altogether (no reader) counts its total
        known = per_node_avail.get(node["NodeID"])
        avail = total if known is None else int(known.get(kind, 0))
        free[ip] = NodeDevices(ip=ip, free=avail, total=total)
    return list(free.values())


def _available_per_node() -> dict:
    """Free resources per node ID. Ray's only API for this is the DeveloperAPI
    `ray._private.state.available_resources_per_node` (what ray.util.tpu uses;
    `ray.available_resources()` is cluster-wide), used behind a guard: if a Ray release drops it,
    placement says so, naming the version, and counts total instead of free devices."""
    reader = private_available_resources_reader()
    if reader is None:
        return {}
    try:
        return reader()
    except Exception:  # noqa: BLE001 - GCS hiccup: totals are a safe over-estimate, waited on
        return {}


def private_available_resources_reader(warn=None):
    """`ray._private.state.available_resources_per_node`, or None with one warning that names
    the installed Ray and the releases this was tested with."""
    try:
        from ray._private.state import available_resources_per_node

        return available_resources_per_node
    except ImportError:
        import ray

        (warn or log.warning)(
            f"ray {ray.__version__} has no ray._private.state.available_resources_per_node "
            f"(tested with ray {TESTED_RAY}); placement counts total, not free, devices. "
            f"Install the ray of images/requirements.txt")
        return None


def wait_for_placement(tp: int, pp: int, kind: str, wait_s: float,
                       data_parallel_rank: int = 0) -> list[str]:
    """Node IP per rank, waiting up to wait_s for nodes to join or free up."""
    import ray

    driver_ip = ray.util.get_node_ip_address()
    deadline = time.monotonic() + wait_s
    while True:
        nodes = inventory(kind)
        first = replica_first_node(nodes, driver_ip, data_parallel_rank)
        try:
            return place_ranks_on_nodes(tp, pp, nodes, first, kind)
        except ResourceError:
            if started_local or time.monotonic() >= deadline:  # nobody joins a local instance
                waited = "" if started_local else f" (waited {wait_s:.0f}s)"
                raise ResourceError(insufficient_message(tp, pp, nodes, kind) + waited) from None
        time.sleep(1.0)


def release(actors, pg) -> None:
    """Kill `actors` and remove placement group `pg`, best effort: used on shutdown paths, where
    a node may already be gone (the engine's workers, the healthcheck's probes)."""
    import ray
    from ray.util.placement_group import remove_placement_group

    for actor in actors:
        try:
            ray.kill(actor)
        except Exception:  # noqa: BLE001 - best effort
            pass
    if pg is not None:
        try:
            remove_placement_group(pg)
        except Exception:  # noqa: BLE001 - best effort
            pass
