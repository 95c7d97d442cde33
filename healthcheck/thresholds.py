"""What bandwidth each kind of link should reach, and which kind a measurement ran over (pure).

Figures are GB/s (1e9 B/s) of all-reduce bus bandwidth for the largest message (or one-way
point-to-point bandwidth for a pair), set a little under what healthy systems of that kind show
in nccl-tests, so that a measurement below FLAG_FRACTION of its figure means something is wrong
rather than merely "not a record". Override any of them with `--expect KIND=GBPS`. gloo moves
CPU tensors through the kernel's TCP stack and is a bring-up check, so its figure is low on
purpose (three containers sharing two cores reach about 0.45 GB/s busbw at 128 MiB).

| kind          | link                                   | line rate         | expected busbw |
|---------------|----------------------------------------|-------------------|----------------|
| nvlink        | NVLink 3/4 inside a node (A100/H100)   | 300-450 GB/s      | 150            |
| pcie          | PCIe Gen4 x16 peer-to-peer             | 32 GB/s           | 10             |
| shm           | same host through host memory          | -                 | 5              |
| ib-ndr        | InfiniBand NDR, 400 Gb/s per NIC       | 50 GB/s           | 40             |
| ib-hdr        | InfiniBand HDR, 200 Gb/s per NIC       | 25 GB/s           | 20             |
| ib            | InfiniBand/RoCE of unknown rate        | -                 | 10             |
| eth-100g      | 100 GbE RoCE, or IB EDR (100 Gb/s)     | 12.5 GB/s         | 10             |
| socket        | NCCL over TCP sockets                  | NIC dependent     | 1              |
| gloo          | gloo over TCP (CPU tensors)            | NIC dependent     | 0.25           |
"""

from onenode.errors import ConfigError

EXPECTED_GBPS: dict[str, float] = {
    "nvlink": 150.0, "pcie": 10.0, "shm": 5.0, "ib-ndr": 40.0, "ib-hdr": 20.0, "ib": 10.0,
    "eth-100g": 10.0, "socket": 1.0, "gloo": 0.25,
}
FLAG_FRACTION = 0.8  # below 80 % of the expected figure is flagged
# Small messages measure latency, not bandwidth: only sizes from this one up are judged.
MIN_JUDGED_BYTES = 16 << 20


def parse_expect(items: list[str] | None) -> dict[str, float]:
    """`--expect socket=2.5 --expect gloo=0.2` (or comma-separated) over the defaults."""
    table = dict(EXPECTED_GBPS)
    for item in items or []:
        for part in filter(None, (p.strip() for p in item.split(","))):
            kind, _, value = part.partition("=")
            try:
                table[kind.strip()] = float(value)
            except ValueError:
                raise ConfigError(f"--expect {part!r}: write KIND=GBPS with KIND one of "
                                  f"{', '.join(EXPECTED_GBPS)}, e.g. --expect socket=2.5") from None
            if kind.strip() not in EXPECTED_GBPS:
                raise ConfigError(f"--expect {part!r}: unknown link kind; use one of "
                                  f"{', '.join(EXPECTED_GBPS)}")
    return table


def ib_kind(rate_gbit: float) -> str:
    """Link kind of an InfiniBand/RoCE port from its rate (/sys/class/infiniband/*/ports/*/rate)."""
    if rate_gbit >= 400:
        return "ib-ndr"
    if rate_gbit >= 200:
        return "ib-hdr"
    if rate_gbit >= 100:
        return "eth-100g"
    return "ib"


def nccl_kind(transport: str, inter_node: bool, ib_rate_gbit: float, nvlink: bool) -> str:
    """Kind of link an NCCL transport (nccl_log.transport_kind) runs over."""
    if transport == "ib":
        return ib_kind(ib_rate_gbit)
    if transport == "socket":
        return "socket"
    if transport == "shm":
        return "shm"
    if transport in ("p2p", "nvls"):
        return "nvlink" if nvlink else "pcie"
    return "socket" if inter_node else "pcie"


def judge(measured_gbps: float, kind: str, table: dict[str, float]) -> tuple[bool, float]:
    """(below the flag line?, expected figure)."""
    expected = table.get(kind, 0.0)
    return measured_gbps < FLAG_FRACTION * expected, expected
