"""Values of `docker run` options, read the way the docker CLI reads them (pure).

Each function takes one option value as typed (`--device /dev/x:/dev/y:rwm`, `-p 80:8000`) and
returns structured data for docker-py; a malformed value is a one-line ConfigError showing the
accepted forms.
"""

import re

from cluster.args import is_ip
from onenode.errors import ConfigError

RESTART_POLICIES = ("no", "always", "unless-stopped", "on-failure")
# go-units ulimit names (what `docker run --ulimit` accepts).
ULIMIT_NAMES = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
                "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")
IPC_MODES = ("none", "private", "shareable", "host")
PID_MODES = ("host",)
_ENV_NAME = re.compile(r"[^\s=]+")
_CPUSET = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")


def volume(text: str) -> tuple[str, str, bool]:
    """SRC:DST[:ro|rw] -> (source, target, read_only)."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1] or \
            (len(parts) == 3 and parts[2] not in ("ro", "rw")):
        raise ConfigError(f"-v {text!r} must be SRC:DST, SRC:DST:ro or SRC:DST:rw")
    return parts[0], parts[1], len(parts) == 3 and parts[2] == "ro"


def ulimit(text: str) -> tuple[str, int, int]:
    """name=soft[:hard] -> (name, soft, hard); -1 is unlimited (memlock=-1)."""
    name, _, limits = text.partition("=")
    soft, _, hard = limits.partition(":")
    try:
        values = int(soft), int(hard or soft)
    except ValueError:
        values = None
    if name not in ULIMIT_NAMES or values is None:
        raise ConfigError(f"--ulimit {text!r} must be NAME=SOFT[:HARD] like memlock=-1 or "
                          f"nofile=1024:2048 (names: {', '.join(ULIMIT_NAMES)})")
    if values[1] != -1 and (values[0] == -1 or values[0] > values[1]):
        raise ConfigError(f"--ulimit {text!r}: the soft limit must not exceed the hard limit")
    return name, values[0], values[1]


def device(text: str) -> str:
    """HOST[:CONTAINER][:PERMS] -> 'HOST:CONTAINER:PERMS' (the one form docker-py reads right;
    it would take '/dev/x:rwm' as a container path)."""
    parts = text.split(":")
    perms = "rwm"
    if len(parts) > 1 and parts[-1] and not parts[-1].startswith("/"):
        perms = parts.pop()
    if not 1 <= len(parts) <= 2 or not all(p.startswith("/") for p in parts) or \
            not perms or set(perms) - set("rwm"):
        raise ConfigError(f"--device {text!r} must be HOST[:CONTAINER][:PERMS] with absolute paths "
                          f"and PERMS from rwm, e.g. /dev/infiniband or /dev/x:/dev/y:rw")
    return f"{parts[0]}:{parts[-1]}:{perms}"


def publish(text: str) -> tuple[str, str, int | None]:
    """[IP:][HOST_PORT:]CONTAINER_PORT[/PROTO] -> ('8000/tcp', host ip ('' = all), host port or
    None for a random one). Port ranges are not taken."""
    bad = ConfigError(f"-p {text!r} must be [IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp|sctp], "
                      f"e.g. 127.0.0.1:8000:8000 or 8000:8000")
    spec, _, proto = text.partition("/")
    ip = ""
    if spec.startswith("["):  # [::1]:8000:8000
        ip, _, spec = spec[1:].partition("]")
        spec = spec.removeprefix(":")
    parts = spec.split(":")
    if not ip and len(parts) == 3:
        ip = parts.pop(0)
    if len(parts) not in (1, 2) or (proto or "tcp") not in ("tcp", "udp", "sctp"):
        raise bad
    host_port = parts[0] if len(parts) == 2 else ""
    if (ip and not is_ip(ip)) or not _port(parts[-1]) or (host_port and not _port(host_port)):
        raise bad
    return f"{int(parts[-1])}/{proto or 'tcp'}", ip, int(host_port) if host_port else None


def add_host(text: str) -> tuple[str, str]:
    """HOST:IP or HOST=IP (IP may be IPv6 or host-gateway) -> (host, ip)."""
    sep = "=" if "=" in text else ":"
    host, _, ip = text.partition(sep)
    if not host or not (ip == "host-gateway" or is_ip(ip.strip("[]"))):
        raise ConfigError(f"--add-host {text!r} must be HOST:IP, e.g. node1:10.0.0.2")
    return host, ip.strip("[]")


def restart(text: str) -> tuple[str, int]:
    """no | always | unless-stopped | on-failure[:N] -> (name, max retries)."""
    name, _, count = text.partition(":")
    if name not in RESTART_POLICIES or (count and (name != "on-failure" or not count.isdigit())):
        raise ConfigError(f"--restart {text!r} must be one of no, always, unless-stopped, "
                          f"on-failure[:MAX_RETRIES]")
    return name, int(count or 0)


def label(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    if not key:
        raise ConfigError(f"--label {text!r} must be KEY=VALUE or KEY")
    return key, value


def cpus(text: str) -> int:
    """--cpus 1.5 -> nano CPUs (docker-py's nano_cpus)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigError(f"--cpus {text!r} must be a positive number of CPUs, e.g. 1.5")
    return int(value * 1e9)


def cpuset(text: str) -> str:
    if not _CPUSET.fullmatch(text):
        raise ConfigError(f"--cpuset-cpus {text!r} must list CPUs like 0-3 or 0,2,4")
    return text


def namespace(flag: str, text: str | None, modes: tuple[str, ...]) -> str | None:
    """--ipc / --pid: one of `modes` or container:NAME."""
    if text is None or text in modes or (text.startswith("container:") and len(text) > 10):
        return text
    raise ConfigError(f"{flag} {text!r} must be one of {', '.join(modes)} or container:NAME")


def parse_env(items: list[str], env_file_lines: list[tuple[str, int, str]],
              caller_env: dict[str, str]) -> dict[str, str]:
    """docker's rules: --env-file lines (file, line number, text) first, then -e wins. A bare
    `VAR` (either place) takes the caller's value and is left out when the caller has none;
    `#` comments and blank lines are skipped; values are taken literally (no quote removal)."""
    env: dict[str, str] = {}
    for path, number, line in env_file_lines:
        line = line.lstrip().removeprefix("\ufeff")
        if line and not line.startswith("#"):
            _env_item(env, line, caller_env, f"--env-file {path} line {number}")
    for item in items:
        _env_item(env, item, caller_env, "-e")
    return env


def _env_item(env: dict, item: str, caller_env: dict, where: str) -> None:
    name, has_value, value = item.partition("=")
    if not _ENV_NAME.fullmatch(name):
        raise ConfigError(f"{where}: {item!r} has no valid variable name; write NAME=VALUE "
                          f"(or NAME to take this shell's value)")
    if has_value:
        env[name] = value
    elif name in caller_env:
        env[name] = caller_env[name]


def _port(text: str) -> bool:
    return text.isdigit() and 0 < int(text) < 65536

