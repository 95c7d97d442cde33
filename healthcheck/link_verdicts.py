"""Can the nodes talk, and fast enough? Verdicts on all-reduce, point-to-point and NCCL transports
(pure; the measurements come from collectives.py, the figures from thresholds.py)."""

import statistics
from dataclasses import dataclass

from healthcheck.collectives import AllReduceResult, P2PResult, busbw
from healthcheck.inventory import NodeInventory
from healthcheck.nccl_log import LinkTransport
from healthcheck.thresholds import FLAG_FRACTION, MIN_JUDGED_BYTES, judge
from healthcheck.verdicts import FAIL, INFO, WARN, Verdict

# A pair slower than this fraction of the median pair is "the slow link" even when no figure
# applies (generous: a shared CPU makes single measurements noisy).
SLOW_PAIR_FRACTION = 0.5


@dataclass(frozen=True, slots=True)
class LinkResult:
    """One measured pair, for the links table."""
    src: str  # node label
    dst: str
    kind: str  # link kind (thresholds.EXPECTED_GBPS)
    gbps: float
    expected_gbps: float
    level: str


def merge_allreduce(per_rank: list[list[dict]], world: int) -> list[AllReduceResult]:
    """One result per size across ranks: correct only if every rank saw the right sum, timed by
    the slowest rank (a collective ends when its last rank does)."""
    out = []
    for rows in zip(*per_rank):
        size = rows[0]["size"]
        t = max(r["time_s"] for r in rows)
        algbw = size / t / 1e9
        out.append(AllReduceResult(size, all(r["correct"] for r in rows), t, algbw,
                                   busbw(algbw, world), rows[0]["iters"]))
    return out


def allreduce_verdicts(backend: str, results: list[AllReduceResult], kind: str,
                       table: dict[str, float]) -> list[Verdict]:
    out = []
    wrong = [r.size for r in results if not r.correct]
    if wrong:
        out.append(Verdict(FAIL, "allreduce", f"{backend} all-reduce returned wrong sums for "
                           f"{', '.join(f'{s >> 20} MiB' for s in wrong)}; a node computes or "
                           f"transfers corrupted data: rerun, then check its NIC/GPU and "
                           f"driver versions"))
    judged = [r for r in results if r.size >= MIN_JUDGED_BYTES]
    if judged:
        big = judged[-1]
        low, expected = judge(big.busbw_gbps, kind, table)
        if low:
            out.append(Verdict(WARN, "allreduce", f"{backend} all-reduce busbw "
                               f"{big.busbw_gbps:.2f} GB/s at {big.size >> 20} MiB is under "
                               f"{FLAG_FRACTION:.0%} of the {expected:g} GB/s expected for "
                               f"{kind}; check the transport lines and NCCL_SOCKET_IFNAME/"
                               f"NCCL_IB_HCA, or set the figure with --expect {kind}=GBPS"))
    return out


def pair_results(p2p: list[P2PResult], rank_label: dict[int, str], kind_of,
                 table: dict[str, float]) -> list[LinkResult]:
    """Label each measured pair and judge it against its link kind's figure and against the
    median pair (the slow link stands out even without a figure)."""
    median = statistics.median(r.gbps for r in p2p) if p2p else 0.0
    out = []
    for r in p2p:
        kind = kind_of(r.src, r.dst)
        low, expected = judge(r.gbps, kind, table)
        slow = r.size >= MIN_JUDGED_BYTES and (low or r.gbps < SLOW_PAIR_FRACTION * median)
        out.append(LinkResult(rank_label[r.src], rank_label[r.dst], kind, r.gbps, expected,
                              WARN if slow else "ok"))
    return out


def p2p_verdicts(links: list[LinkResult], size: int) -> list[Verdict]:
    out = []
    for link in links:
        if link.level == WARN:
            out.append(Verdict(WARN, "p2p", f"slow link {link.src} <-> {link.dst}: "
                               f"{link.gbps:.2f} GB/s one-way at {size >> 20} MiB (expected "
                               f"{link.expected_gbps:g} GB/s for {link.kind}); check that "
                               f"pair's NICs, cabling and NCCL_SOCKET_IFNAME",
                               (link.src, link.dst)))
    return out


def transport_verdicts(links: list[LinkTransport], rank_label: dict[int, str],
                       nodes: dict[str, NodeInventory]) -> list[Verdict]:
    """The seed's silent fallback: inter-node NCCL traffic over sockets although IB exists."""
    out = []
    with_ib = sorted(label for label, inv in nodes.items()
                     if any(p.get("state", "").upper() == "ACTIVE" for p in inv.ib_ports))
    socket_pairs = sorted({(rank_label.get(l.src, str(l.src)), rank_label.get(l.dst, str(l.dst)))
                           for l in links if l.inter_node and l.transport == "socket"})
    if socket_pairs and with_ib:
        pairs = ", ".join(f"{a}->{b}" for a, b in socket_pairs[:6])
        out.append(Verdict(WARN, "transport", f"NCCL sends inter-node traffic via NET/Socket "
                           f"({pairs}) although {', '.join(with_ib)} have active InfiniBand "
                           f"ports; expose the IB devices to the containers (`--device "
                           f"/dev/infiniband --cap-add IPC_LOCK`), unset NCCL_IB_DISABLE, "
                           f"check NCCL_IB_HCA", tuple(with_ib)))
    ib_no_gdr = sorted({(rank_label.get(l.src, str(l.src)), rank_label.get(l.dst, str(l.dst)))
                        for l in links if l.transport == "ib" and not l.gdrdma})
    if ib_no_gdr:
        out.append(Verdict(INFO, "transport", f"InfiniBand without GPUDirect RDMA on "
                           f"{len(ib_no_gdr)} link(s); load nvidia-peermem for GDRDMA"))
    return out
