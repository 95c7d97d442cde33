"""`onenode healthcheck` end to end: probes gather inventories, gloo (always) and NCCL (when every
node has GPUs) run all-reduce and pairwise point-to-point, then everything is judged.

Order matters for bounded failure: inventory first (cheap, names a dead node), collectives only
among the nodes that answered, each step under its own deadline.
"""

import os
from dataclasses import asdict, dataclass, field

from engine.planner.strategy import ClusterShape
from healthcheck import fleet as fl
from healthcheck.collectives import AllReduceResult, P2PResult
from healthcheck.inventory import NodeInventory
from healthcheck.link_verdicts import (
    LinkResult,
    allreduce_verdicts,
    merge_allreduce,
    p2p_verdicts,
    pair_results,
    transport_verdicts,
)
from healthcheck.nccl_log import LinkTransport, link_transports, parse_nccl_log
from healthcheck.thresholds import EXPECTED_GBPS, nccl_kind
from healthcheck.verdicts import FAIL, INFO, Verdict, exit_code, node_verdicts
from onenode.errors import ConfigError

DEFAULT_SIZES = (1 << 20, 16 << 20, 128 << 20)


@dataclass(frozen=True, slots=True)
class HealthcheckOptions:
    address: str = "auto"
    model: str | None = None
    sizes: tuple[int, ...] = DEFAULT_SIZES
    p2p_size: int = 16 << 20
    timeout_s: float = 60.0
    expect: dict = field(default_factory=lambda: dict(EXPECTED_GBPS))
    simulated: bool = False
    nccl: str = "auto"  # auto: when every node has GPUs | off


@dataclass
class HealthReport:
    nodes: dict[str, NodeInventory] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    allreduce: dict[str, list[AllReduceResult]] = field(default_factory=dict)
    links: dict[str, list[LinkResult]] = field(default_factory=dict)
    transports: list[LinkTransport] = field(default_factory=list)
    world: dict[str, int] = field(default_factory=dict)  # backend -> ranks
    p2p_size: int = 0

    def exit_code(self, strict: bool = False) -> int:
        return exit_code(self.verdicts, strict)

    def to_dict(self, strict: bool = False) -> dict:
        return {"exit_code": self.exit_code(strict),
                "nodes": {k: asdict(v) for k, v in self.nodes.items()},
                "verdicts": [asdict(v) for v in self.verdicts],
                "allreduce": {b: [asdict(r) for r in rs] for b, rs in self.allreduce.items()},
                "p2p": {b: [asdict(r) for r in rs] for b, rs in self.links.items()},
                "world": self.world, "p2p_size": self.p2p_size,
                "nccl_transports": [asdict(t) for t in self.transports]}


def run_healthcheck(opts: HealthcheckOptions) -> HealthReport:
    ray = fl.connect(opts.address)
    fleet = fl.place_probes(ray, wait_s=min(opts.timeout_s, 15.0))
    report = HealthReport(p2p_size=opts.p2p_size)
    try:
        report.verdicts += [Verdict(INFO, "reachable", note) for note in fleet.notes]
        report.verdicts += _dead_verdicts(fleet.dead)
        ranks = _gather_inventory(ray, fleet, opts, report)
        report.verdicts += node_verdicts(report.nodes, opts.simulated)
        _run_gloo(ray, ranks, opts, report)
        if opts.nccl != "off" and report.nodes and all(i.gpus for i in report.nodes.values()):
            _run_nccl(ray, fleet, ranks, opts, report)
    finally:
        fl.release(ray, fleet)
    return report


def _dead_verdicts(dead: list[dict]) -> list[Verdict]:
    return [Verdict(FAIL, "reachable", f"Ray lists node {d['ip']} as dead; restart it with "
                    f"`run_cluster ... --worker` (or remove it) and rerun", (d["ip"],))
            for d in dead]


def _labels(pairs: list[tuple[dict, object]]) -> list[str]:
    """Ray IP per probe; made unique when several Ray nodes share one IP."""
    ips = [node["ip"] for node, _ in pairs]
    return [ip if ips.count(ip) == 1 else f"{ip}#{node['node_id'][:6]}"
            for ip, (node, _) in zip(ips, pairs)]


def _gather_inventory(ray, fleet, opts, report) -> list[tuple[str, object]]:
    """Inventories into report.nodes; returns (label, actor) of the probes that answered."""
    run_key = os.urandom(16)
    refs = [actor.inventory.remote(opts.model, run_key) for _, actor in fleet.probes]
    results = fl.gather(ray, refs, opts.timeout_s)
    ranks = []
    for label, (node, actor), result in zip(_labels(fleet.probes), fleet.probes, results):
        if isinstance(result, BaseException):
            report.verdicts.append(Verdict(
                FAIL, "reachable", f"node {label} did not report ({fl.error_line(result)}); check "
                f"it with `ray status` and its container's logs, then restart it", (label,)))
            continue
        report.nodes[label] = result
        ranks.append((label, actor))
    return ranks


def _collect(ray, backend, ranks, opts, report, pairs) -> list[dict] | None:
    """All-reduce and p2p over `ranks` ((label, actor), in rank order): the per-rank results, or
    None after recording which nodes failed."""
    if not ranks:
        return None
    world = len(ranks)
    addr = report.nodes[ranks[0][0]].ray_ip
    [port] = fl.gather(ray, [ranks[0][1].free_port.remote()], opts.timeout_s)
    if isinstance(port, BaseException):
        report.verdicts.append(Verdict(FAIL, "allreduce", f"{backend} rank 0 on {ranks[0][0]} "
                                       f"did not answer ({fl.error_line(port)})", (ranks[0][0],)))
        return None
    refs = [actor.run.remote(backend, r, world, addr, port, list(opts.sizes), opts.p2p_size,
                             opts.timeout_s, pairs) for r, (_, actor) in enumerate(ranks)]
    results = fl.gather(ray, refs, 3 * opts.timeout_s + 30)
    failed = [(label, res) for (label, _), res in zip(ranks, results)
              if isinstance(res, BaseException)]
    if not failed:
        return results
    nodes = sorted({label for label, _ in failed})
    report.verdicts.append(Verdict(
        FAIL, "allreduce", f"{backend} collectives failed on {', '.join(nodes)} "
        f"({fl.error_line(failed[0][1])}); check that every node reaches {addr} and the others "
        f"on any TCP port (firewall) and GLOO_SOCKET_IFNAME/NCCL_SOCKET_IFNAME", tuple(nodes)))
    return None


def _judge(backend, results, rank_label, kind_of, opts, report) -> None:
    world = len(results)
    merged = merge_allreduce([res["allreduce"] for res in results], world)
    report.world[backend] = world
    report.allreduce[backend] = merged
    report.verdicts += allreduce_verdicts(backend, merged, kind_of(0, world - 1), opts.expect)
    measured = [P2PResult(**p) for res in results for p in res["p2p"]]
    links = pair_results(measured, rank_label, kind_of, opts.expect)
    report.links[backend] = links
    report.verdicts += p2p_verdicts(links, opts.p2p_size)


def _run_gloo(ray, ranks, opts, report) -> None:
    results = _collect(ray, "gloo", ranks, opts, report, None)
    if results is not None:
        rank_label = {r: label for r, (label, _) in enumerate(ranks)}
        _judge("gloo", results, rank_label, lambda a, b: "gloo", opts, report)


def _run_nccl(ray, fleet, ranks, opts, report) -> None:
    """One rank per GPU; NCCL's own transport lines decide which link figure applies; p2p runs
    between the first GPU of every pair of nodes."""
    answered = {id(actor) for _, actor in ranks}
    labels = dict(zip((node["node_id"] for node, _ in fleet.probes), _labels(fleet.probes)))
    fl.place_gpu_probes(ray, fleet, [n for n, a in fleet.probes if id(a) in answered])
    gpu_ranks = [(labels[node["node_id"]], actor) for node, actor in fleet.gpu_probes]
    first: dict[str, int] = {}
    for r, (label, _) in enumerate(gpu_ranks):
        first.setdefault(label, r)
    pairs = [(a, b) for a in first.values() for b in first.values() if a < b]
    results = _collect(ray, "nccl", gpu_ranks, opts, report, pairs)
    if results is None:
        return
    rank_label = {r: label for r, (label, _) in enumerate(gpu_ranks)}
    log = parse_nccl_log(line for res in results for line in res.get("nccl_log", []))
    report.transports = link_transports(log, rank_label)
    report.verdicts += transport_verdicts(report.transports, rank_label, report.nodes)
    report.verdicts += [Verdict(INFO, "nccl", w) for w in log.warnings[:5]]
    _judge("nccl", results, rank_label, _nccl_kind_of(report, rank_label), opts, report)


def _nccl_kind_of(report, rank_label):
    """kind_of(rank_a, rank_b) for NCCL: the transport NCCL chose between nodes (IB rated by
    the slowest node's ports), NVLink/PCIe/SHM inside one."""
    ib_rate = min((max((p["rate_gbit"] for p in inv.ib_ports), default=0.0)
                   for inv in report.nodes.values()), default=0.0)
    nvlink = any(g.get("nvlinks") for inv in report.nodes.values() for g in inv.gpus)
    inter = [t.transport for t in report.transports if t.inter_node]
    intra = [t.transport for t in report.transports if not t.inter_node]
    inter_t = max(set(inter), key=inter.count) if inter else ("ib" if ib_rate else "socket")
    intra_t = max(set(intra), key=intra.count) if intra else "p2p"

    def kind_of(a: int, b: int) -> str:
        if rank_label.get(a) != rank_label.get(b):
            return nccl_kind(inter_t, True, ib_rate, nvlink)
        return nccl_kind(intra_t, False, ib_rate, nvlink)

    return kind_of


def live_cluster_shape(address: str = "auto", timeout_s: float = 60.0) -> ClusterShape:
    """Nodes, GPUs per node and GPU memory of the live cluster (the smallest node counts), for
    `onenode plan --cluster`."""
    ray = fl.connect(address)
    fleet = fl.place_probes(ray, wait_s=min(timeout_s, 15.0))
    try:
        invs = [r for r in fl.gather(ray, [a.inventory.remote(None, b"") for _, a in fleet.probes],
                                     timeout_s) if not isinstance(r, BaseException)]
    finally:
        fl.release(ray, fleet)
    gpu_nodes = [inv for inv in invs if inv.gpus]
    if not gpu_nodes:
        raise ConfigError("the live cluster has no GPUs; plan for GPUs with --nodes N "
                          "--gpus-per-node G --gpu-memory 80GiB instead of --cluster")
    return ClusterShape(len(gpu_nodes), min(len(inv.gpus) for inv in gpu_nodes),
                        min(g["memory_bytes"] for inv in gpu_nodes for g in inv.gpus))
