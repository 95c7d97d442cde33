"""Where each rank runs on a Ray cluster (pure).

The seed's rule: a TP group shares a node (fast links), PP stages cross nodes. With at least
`pp` nodes that can each hold a whole TP group, stage s goes to its own node (driver's node first);
otherwise stages are packed onto nodes in order; a TP group is split across nodes only when no
node can hold it. Data-parallel replica r starts from the r-th node (`replica_first_node`), so
replicas land on different nodes and a node's death costs one replica.
"""

from dataclasses import dataclass

from onenode.errors import ResourceError


@dataclass(frozen=True, slots=True)
class NodeDevices:
    ip: str
    free: int  # devices (GPUs, or CPUs on a CPU-only cluster) Ray can still hand out
    total: int = 0


def place_ranks_on_nodes(tp: int, pp: int, nodes: list[NodeDevices], driver_ip: str | None,
                         device: str = "CPU") -> list[str]:
    """Node IP for each rank (rank = pp_rank * tp + tp_rank). Raises ResourceError naming what is
    missing when the cluster cannot hold tp * pp ranks."""
    ordered = sorted(nodes, key=lambda n: (n.ip != driver_ip, n.ip))
    capable = [n for n in ordered if n.free >= tp]
    if len(capable) >= pp:
        return [capable[s].ip for s in range(pp) for _ in range(tp)]
    left = {n.ip: n.free for n in ordered}
    placement: list[str] = []
    for _ in range(pp):
        node = next((n.ip for n in ordered if left[n.ip] >= tp), None)
        if node is None:
            break
        left[node] -= tp
        placement.extend([node] * tp)
    if len(placement) == tp * pp:
        return placement
    return _split_tp_groups(tp, pp, ordered, device)


def replica_first_node(nodes: list[NodeDevices], driver_ip: str | None,
                       data_parallel_rank: int) -> str | None:
    """The node replica `data_parallel_rank`'s placement starts from (what place_ranks_on_nodes
    takes as its first choice): the driver's node for replica 0, then the others in IP order,
    round robin. Nodes with no device at all (a CPU-less head) are skipped."""
    ordered = [n for n in sorted(nodes, key=lambda n: (n.ip != driver_ip, n.ip)) if n.total]
    if not ordered:
        return driver_ip
    return ordered[data_parallel_rank % len(ordered)].ip


def _split_tp_groups(tp: int, pp: int, ordered: list[NodeDevices], device: str) -> list[str]:
    world = tp * pp
    placement = [n.ip for n in ordered for _ in range(n.free)][:world]
    if len(placement) < world:
        raise ResourceError(insufficient_message(tp, pp, ordered, device))
    return placement


def insufficient_message(tp: int, pp: int, nodes: list[NodeDevices], device: str) -> str:
    world = tp * pp
    have = sum(n.free for n in nodes)
    layout = " x ".join(f"{k}={v}" for k, v in (("TP", tp), ("PP", pp)) if v > 1) or "TP=1"
    per_node = ", ".join(f"{n.ip}: {n.free}/{n.total} {device} free" for n in nodes) or "no nodes"
    return (f"{layout} needs {world} {device}s (one per rank), this Ray cluster has {have} free: "
            f"{per_node}; missing {world - have}: add nodes with `run_cluster IMAGE HEAD_IP "
            f"--worker ...` or lower tensor_parallel_size x pipeline_parallel_size")
