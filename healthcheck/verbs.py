"""Which InfiniBand/RoCE devices verbs can use on this node (pure reads of sysfs and /dev).

The kernel lists every RDMA device under /sys/class/infiniband; libibverbs opens one through the
character device /dev/infiniband/uverbsN that /sys/class/infiniband_verbs/uverbsN/ibdev names. A
container sees the sysfs entries always, but the /dev nodes only with `--device /dev/infiniband`,
and NCCL loads libibverbs only if the image has it (the cuda image does). Any of the three missing
and NCCL silently uses sockets.
"""

import ctypes.util
from pathlib import Path


def verbs_devices(sys_root: str = "/sys/class/infiniband_verbs",
                  dev_root: str = "/dev/infiniband",
                  ib_root: str = "/sys/class/infiniband") -> list[dict]:
    """One entry per verbs device: device (mlx5_0), uverbs (uverbs0), open (its /dev node is
    there), link_layer (InfiniBand, or Ethernet for RoCE; of its first port)."""
    out = []
    for entry in sorted(Path(sys_root).glob("uverbs*")):
        try:
            device = (entry / "ibdev").read_text().strip()
        except OSError:
            continue
        out.append({"device": device, "uverbs": entry.name,
                    "open": (Path(dev_root) / entry.name).exists(),
                    "link_layer": _link_layer(Path(ib_root) / device)})
    return out


def _link_layer(device_dir: Path) -> str:
    for port in sorted(device_dir.glob("ports/*")):
        try:
            return (port / "link_layer").read_text().strip()
        except OSError:
            continue
    return "unknown"


def has_libibverbs() -> bool:
    """Whether the dynamic loader finds libibverbs (what NCCL dlopens for its IB transport)."""
    return ctypes.util.find_library("ibverbs") is not None
