"""The probes on a live Ray cluster: connect, place one per node (or one per GPU), call them with
bounded waits, and clean up. Every wait has a deadline; a node that does not answer is named,
never waited for forever."""

import ipaddress
import socket
from dataclasses import dataclass, field

from healthcheck.probe import Probe
from onenode.errors import ClusterError

PROBE_CPU = 0.01  # a sliver: probes must fit next to a running engine


@dataclass
class Fleet:
    """Probes and the Ray objects that must be released afterwards."""
    nodes: list[dict]  # alive Ray nodes: NodeID, ip, resources
    dead: list[dict]  # Ray nodes marked dead (and not replaced by a live node at their IP)
    probes: list = field(default_factory=list)  # (node dict, actor), one per node
    gpu_probes: list = field(default_factory=list)  # (node dict, actor), one per GPU
    pg: object = None
    notes: list[str] = field(default_factory=list)


def connect(address: str):
    import ray

    if not ray.is_initialized():
        try:
            _gcs_answers(address)
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError, OSError) as exc:
            raise ClusterError(
                f"cannot join the Ray cluster at {address!r} ({_first_sentence(exc)});"
                f" run inside a cluster container (`docker exec onenode-head onenode "
                f"healthcheck`) or use `onenode cluster healthcheck` from the host") from None
    return ray


def _first_sentence(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text.split(". ")[0][:160]


def _gcs_answers(address: str, timeout_s: float = 5.0) -> None:
    """ray.init retries an unreachable GCS forever; a TCP connect with a deadline first turns
    that hang into an error."""
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # private API moved: let ray.init decide
        return
    target = canonicalize_bootstrap_address(address)
    if target is None:
        raise ConnectionError("no running Ray instance found")
    host, _, port = target.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConnectionError(f"nothing answers at {target} within {timeout_s:.0f}s: "
                              f"{exc.strerror or exc}") from None


def cluster_nodes(ray) -> tuple[list[dict], list[dict]]:
    alive, dead = [], []
    for n in ray.nodes():
        node = {"node_id": n["NodeID"], "ip": n["NodeManagerAddress"],
                "resources": n.get("Resources", {}), "hostname": n.get("NodeManagerHostname")}
        (alive if n["Alive"] else dead).append(node)
    live_ips = {n["ip"] for n in alive}
    return alive, [d for d in dead if d["ip"] not in live_ips]


def _ip_key(ip: str) -> tuple:
    try:
        return (0, int(ipaddress.ip_address(ip)))
    except ValueError:
        return (1, ip)


def place_probes(ray, wait_s: float) -> Fleet:
    """One probe per alive node: a STRICT_SPREAD placement group when it can be reserved within
    wait_s, else (CPUs held by an engine, a node not answering) one zero-CPU actor pinned to
    each node, so the node that fails is the one reported."""
    alive, dead = cluster_nodes(ray)
    fleet = Fleet(alive, dead)
    if not alive:
        raise ClusterError("the Ray cluster has no alive node; start it with run_cluster")
    try:
        _place_in_group(ray, fleet, wait_s)
    except TimeoutError:
        fleet.notes.append(f"no STRICT_SPREAD placement group of {len(alive)} x "
                           f"{PROBE_CPU} CPU within {wait_s:.0f}s (CPUs busy, or a node not "
                           f"answering); probes pinned "
                           f"to nodes instead")
        _place_pinned(ray, fleet)
    fleet.probes.sort(key=lambda probe: (_ip_key(probe[0]["ip"]), probe[0]["node_id"]))
    return fleet


def _place_in_group(ray, fleet: Fleet, wait_s: float) -> None:
    from ray.util.placement_group import (
        placement_group,
        placement_group_table,
        remove_placement_group,
    )
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = placement_group([{"CPU": PROBE_CPU}] * len(fleet.nodes), strategy="STRICT_SPREAD")
    ready, _ = ray.wait([pg.ready()], timeout=wait_s)
    if not ready:
        remove_placement_group(pg)
        raise TimeoutError
    fleet.pg = pg
    where = placement_group_table(pg)["bundles_to_node_id"]
    by_id = {n["node_id"]: n for n in fleet.nodes}
    remote = ray.remote(Probe)
    for i in range(len(fleet.nodes)):
        strategy = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i)
        actor = remote.options(num_cpus=PROBE_CPU, scheduling_strategy=strategy).remote()
        fleet.probes.append((by_id[where[i]], actor))


def _place_pinned(ray, fleet: Fleet) -> None:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(Probe)
    for node in fleet.nodes:
        strategy = NodeAffinitySchedulingStrategy(node["node_id"], soft=False)
        fleet.probes.append((node, remote.options(num_cpus=0,
                                                  scheduling_strategy=strategy).remote()))


def place_gpu_probes(ray, fleet: Fleet, nodes: list[dict]) -> None:
    """One probe per GPU Ray offers on each node, ranks ordered node by node."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(Probe)
    for node in nodes:
        for _ in range(int(node["resources"].get("GPU", 0))):
            strategy = NodeAffinitySchedulingStrategy(node["node_id"], soft=False)
            actor = remote.options(num_cpus=0, num_gpus=1, scheduling_strategy=strategy).remote()
            fleet.gpu_probes.append((node, actor))


def gather(ray, refs: list, timeout_s: float) -> list:
    """ray.get with one shared deadline: a result, the exception it raised, or TimeoutError for
    an actor that did not answer in time."""
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s) if refs else ([], [])
    ready_set = set(ready)
    out = []
    for ref in refs:
        if ref not in ready_set:
            out.append(TimeoutError(f"no answer within {timeout_s:.0f}s"))
            continue
        try:
            out.append(ray.get(ref))
        except Exception as exc:  # noqa: BLE001 - reported per node, never raised
            out.append(exc)
    return out


def release(ray, fleet: Fleet) -> None:
    from engine.executor.ray_inventory import release as release_actors

    release_actors([actor for _, actor in fleet.probes + fleet.gpu_probes], fleet.pg)


def error_line(exc: BaseException) -> str:
    """The first meaningful line of a (Ray-wrapped) exception."""
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1][:200] if text else ''}"

