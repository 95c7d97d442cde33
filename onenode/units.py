"""Sizes on the command line, one parser for the whole project (pure).

Docker's convention (go-units `RAMInBytes`, what `--shm-size` and `--memory` take): every unit is
binary, with or without `b`/`ib`. So `1g` = `1gb` = `1GiB` = 2**30 bytes, and `512m` = `512MB` =
2**29. Decimal `GB` would make `--shm-size 1GB` differ from what `docker run --shm-size 1GB`
gives, so it is not offered.
"""

import re

from onenode.errors import ConfigError

_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_SIZE = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([kmgtp]?)(i?b)?\s*", re.IGNORECASE)


def parse_bytes(text: str, default_unit: str = "", flag: str = "size") -> int:
    """'80GiB', '80g', '80GB' -> 85899345920; a bare number takes `default_unit` (e.g. 'GiB').

    `flag` names the option in the error, e.g. '--shm-size'."""
    m = _SIZE.fullmatch(str(text))
    if m and not m.group(2) and not m.group(3) and default_unit:
        m = _SIZE.fullmatch(f"{m.group(1)}{default_unit}")
    if not m or (m.group(3) and m.group(3).lower() == "ib" and not m.group(2)):
        raise ConfigError(f"{flag} {text!r} is not a size; write it like 80GiB, 10.24g, 512m or "
                          f"1024 (units are binary, as in docker: 1g = 1GiB)")
    return int(float(m.group(1)) * (1024 ** _POWERS[m.group(2).lower()]))


def parse_sizes(text: str) -> list[int]:
    """'1M,16M,128M' -> byte counts, ascending and without duplicates."""
    sizes = sorted({parse_bytes(part, flag="--sizes") for part in text.split(",")
                    if part.strip()})
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
