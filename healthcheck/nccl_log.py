"""Read NCCL_DEBUG=INFO output: which transport each rank pair really uses (pure).

NCCL prints one line per channel and peer when it connects, e.g.
    host:pid:tid [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/IPC
    host:pid:tid [1] NCCL INFO Channel 00 : 1[1] -> 2[2] via SHM/direct/direct
    host:pid:tid [3] NCCL INFO Channel 01/0 : 3[3] -> 4[0] [send] via NET/Socket/0
    host:pid:tid [0] NCCL INFO Channel 01 : 2[c7000] -> 0[87000] [receive] via NET/IB/5/GDRDMA
(`[x]` after a rank is the CUDA device or bus id depending on the NCCL version; plugins name the
network `NET/IBext_v8`; Ray prefixes `(RayWorkerWrapper pid=.., ip=..)`.) The seed's silent
failure is inter-node traffic `via NET/Socket` on machines that have InfiniBand.
"""

import re
from collections import Counter
from dataclasses import dataclass

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PREFIX = r"(?:\([^)]*\)\s*)?(?P<host>[^\s:]+):(?P<pid>\d+):\d+\s+\[(?P<dev>\d+)\]\s+NCCL\s+"
_CHANNEL = re.compile(_PREFIX + r"INFO\s+(?:Channel|Ring)\s+(?P<chan>\d+)(?:/\d+)?\s*:\s*"
                      r"(?P<src>\d+)\[[0-9a-fA-F]+\]\s*->\s*(?P<dst>\d+)\[[0-9a-fA-F]+\]\s*"
                      r"(?:\[(?P<dir>send|receive)\]\s*)?via\s+(?P<via>\S+)")
_INIT = re.compile(_PREFIX + r"INFO\s+comm\s+\S+\s+rank\s+(?P<rank>\d+)\s+nranks\s+(?P<n>\d+)")
_NETWORK = re.compile(_PREFIX + r"INFO\s+Using network\s+(?P<net>\S+)")
_WARN = re.compile(_PREFIX + r"WARN\s+(?P<msg>.*)")


@dataclass(frozen=True, slots=True)
class Connection:
    """One channel between two ranks, as one process saw it."""
    host: str
    src: int
    dst: int
    transport: str  # p2p | shm | socket | ib | collnet | nvls | other
    gdrdma: bool
    via: str  # NCCL's own text, e.g. NET/IB/5/GDRDMA


@dataclass(frozen=True, slots=True)
class NcclLog:
    connections: list[Connection]
    rank_hosts: dict[int, str]  # from the "comm ... rank R nranks N" lines
    networks: dict[str, str]  # host -> network NCCL chose ("Socket", "IB", "IBext_v8")
    warnings: list[str]


def transport_kind(via: str) -> str:
    head = via.split("/")
    if head[0] == "NET" and len(head) > 1:
        net = head[1].lower()
        return "ib" if net.startswith("ib") else "socket" if net.startswith("socket") else net
    return {"P2P": "p2p", "SHM": "shm", "CollNet": "collnet", "NVLS": "nvls"}.get(head[0],
                                                                                  "other")


def parse_nccl_log(lines) -> NcclLog:
    """Parse NCCL_DEBUG=INFO lines (any iterable of str; other lines are ignored)."""
    conns, hosts, nets, warns = [], {}, {}, []
    for raw in lines:
        line = _ANSI.sub("", raw).strip()
        if m := _CHANNEL.search(line):
            via = m["via"]
            conns.append(Connection(m["host"], int(m["src"]), int(m["dst"]),
                                    transport_kind(via), "GDRDMA" in via.upper(), via))
        elif m := _INIT.search(line):
            hosts[int(m["rank"])] = m["host"]
        elif m := _NETWORK.search(line):
            nets[m["host"]] = m["net"]
        elif m := _WARN.search(line):
            warns.append(f"{m['host']}: {m['msg'].strip()}")
    return NcclLog(conns, hosts, nets, warns)


@dataclass(frozen=True, slots=True)
class LinkTransport:
    """Every rank pair's transport, summarised: the verdict unit."""
    src: int
    dst: int
    inter_node: bool
    transport: str  # the most used kind on this pair
    gdrdma: bool
    channels: int


def link_transports(log: NcclLog, rank_node: dict[int, str] | None = None) -> list[LinkTransport]:
    """One entry per (src, dst) pair. `rank_node` maps rank -> node (IP or host); without it the
    hosts of the Init lines are used, and pairs with a NET transport count as inter-node."""
    nodes = rank_node or log.rank_hosts
    by_pair: dict[tuple[int, int], list[Connection]] = {}
    for c in log.connections:
        by_pair.setdefault((c.src, c.dst), []).append(c)
    out = []
    for (src, dst), conns in sorted(by_pair.items()):
        kind = Counter(c.transport for c in conns).most_common(1)[0][0]
        if src in nodes and dst in nodes:
            inter = nodes[src] != nodes[dst]
        else:
            inter = kind in ("socket", "ib")
        out.append(LinkTransport(src, dst, inter, kind, all(c.gdrdma for c in conns
                                                            if c.transport == kind),
                                 len(conns)))
    return out
