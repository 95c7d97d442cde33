"""The serving key rule (pure): an API reachable beyond loopback needs a key.

The key reaches the server only as a read-only mounted file (ONENODE_API_KEY_FILE names the path
inside the container) or as VLLM_API_KEY / ONENODE_API_KEY in the container's environment; never
in argv, where `ps` and `docker inspect` would show it.
"""

import ipaddress

from onenode.errors import ConfigError

API_KEY_MOUNT = "/run/onenode/api_key"
KEY_FILE_ENV = "ONENODE_API_KEY_FILE"
KEY_ENVS = ("VLLM_API_KEY", "ONENODE_API_KEY", KEY_FILE_ENV)
SERVE_HOST, SERVE_PORT = "0.0.0.0", 8000  # what run_cluster/cluster serve pass to onenode serve


def serve_address(serve_args: list[str]) -> tuple[str, int]:
    """The --host/--port `onenode serve` ends up with (the last one given wins, as in Typer)."""
    host, port = SERVE_HOST, SERVE_PORT
    for i, arg in enumerate(serve_args):
        key, eq, value = arg.partition("=")
        if key in ("--host", "--port"):
            value = value if eq else (serve_args[i + 1] if i + 1 < len(serve_args) else "")
            if key == "--host":
                host = value
            elif value.isdigit():
                port = int(value)
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure(host_network: bool, serve_args: list[str], published: list[str]) -> str | None:
    """Where the API would answer beyond loopback, or None. With host networking that is the
    address `onenode serve` binds; on a bridge network, the host addresses its port is published
    on ('' = every interface). An unpublished bridge port is reachable from this host only."""
    host, port = serve_address(serve_args)
    if host_network:
        return None if is_loopback(host) else f"{host}:{port} (host network)"
    if is_loopback(host):
        return None
    open_ips = [ip or "0.0.0.0" for ip in published if not is_loopback(ip or "0.0.0.0")]
    return f"{open_ips[0]}:{port} (published)" if open_ips else None


def refuse_key_in_argv(serve_args: list[str]) -> None:
    if any(a == "--api-key" or a.startswith("--api-key=") for a in serve_args):
        raise ConfigError("--api-key in the serve flags would put the key in argv (visible in "
                          "`ps` and `docker inspect`); put it in a file and pass --api-key-file")


def has_key(env: dict[str, str], serve_args: list[str]) -> bool:
    passed_file = any(a == "--api-key-file" or a.startswith("--api-key-file=")
                      for a in serve_args)
    return passed_file or any(env.get(k) for k in KEY_ENVS)


def check_serving(where: str | None, keyed: bool, allow_open: bool, fix: str) -> str | None:
    """Refuse an open API beyond loopback; returns a warning for --allow-unauthenticated."""
    if where is None or keyed:
        return None
    if allow_open:
        return (f"--allow-unauthenticated: the API on {where} accepts requests from anyone who "
                f"reaches it, without a key")
    raise ConfigError(f"the API would listen on {where} without an API key; pass "
                      f"--api-key-file FILE ({fix}), or --allow-unauthenticated to serve it open")
