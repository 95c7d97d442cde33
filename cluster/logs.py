"""`onenode cluster logs [--follow]`: the API server's log file in the head container, with every
secret the node knows (its env, the serve config's env and --api-key) masked."""

import json
import sys

from cluster import backend
from cluster.supervisor import SERVE_CONFIG, SERVE_LOG
from onenode.errors import ClusterError
from onenode.names import head_container
from onenode.secrets import is_secret, mask_text


def known_secrets(env: dict[str, str], serve_config: dict | None) -> list[str]:
    """Values to mask: secret-named env entries (container and serve config) and --api-key."""
    config = serve_config or {}
    values = [v for k, v in {**env, **config.get("env", {})}.items() if is_secret(k)]
    args = config.get("args", [])
    for i, arg in enumerate(args):
        if arg == "--api-key" and i + 1 < len(args):
            values.append(args[i + 1])
        elif arg.startswith("--api-key="):
            values.append(arg.split("=", 1)[1])
    return values


def serve_logs(name: str, follow: bool = False, tail: int = 200) -> None:
    c = backend.client()
    head = head_container(name)
    container = backend.get(c, head)
    if container is None:
        raise ClusterError(f"container {head} does not exist; start the cluster with "
                           f"`onenode cluster up --name {name}`")
    code, raw = backend.exec_in(c, head, ["cat", SERVE_CONFIG])
    try:
        config = json.loads(raw) if code == 0 else None
    except ValueError:
        config = None
    secrets = known_secrets(backend.container_env(container), config)
    if not follow and backend.exec_in(c, head, ["test", "-e", SERVE_LOG])[0] != 0:
        raise ClusterError(f"no server log in {head} yet; start the server with `onenode cluster "
                           f"serve MODEL` (or run_cluster --head --serve MODEL)")
    cmd = ["tail", "-n", str(tail)] + (["-F"] if follow else []) + [SERVE_LOG]
    for chunk in backend.exec_stream(c, head, cmd):
        sys.stdout.write(mask_text(chunk.decode(errors="replace"), secrets))
        sys.stdout.flush()
