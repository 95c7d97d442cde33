"""Sizes on the command line: '80GiB', '80G', '1M', '512MB' (pure)."""

import re

from onenode.errors import ConfigError

# Binary multiples for K/M/G/T and KiB..TiB (what nvidia-smi and nccl-tests mean); decimal for
# KB/MB/GB/TB as disk vendors write them.
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 10**3, "m": 1 << 20, "mib": 1 << 20,
          "mb": 10**6, "g": 1 << 30, "gib": 1 << 30, "gb": 10**9, "t": 1 << 40, "tib": 1 << 40,
          "tb": 10**12}


def parse_bytes(text: str, default_unit: str = "") -> int:
    """'80GiB' -> 85899345920; a bare number takes `default_unit`."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    unit = (m.group(2) if m else "").lower() or default_unit.lower()
    if not m or unit not in _UNITS:
        raise ConfigError(f"cannot read {text!r} as a size; write it like 80GiB, 16M or 512MB")
    return int(float(m.group(1)) * _UNITS[unit])


def parse_sizes(text: str) -> list[int]:
    """'1M,16M,128M' -> byte counts, ascending and without duplicates."""
    sizes = sorted({parse_bytes(part) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < 4:
        raise ConfigError(f"--sizes {text!r} needs at least one size of 4 bytes or more, "
                          f"e.g. --sizes 1M,16M,128M")
    return sizes


def human_bytes(n: float) -> str:
    """Binary units, as the tables print them: 1.50 GiB, 16 MiB."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(n) >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.2f} {unit}"
    return f"{n:.0f} B"
