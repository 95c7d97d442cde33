"""`onenode cluster healthcheck`: run the healthcheck inside the head container, from the host.

The host side reaches the container through cluster/backend.py, the project's one container
seam (imported only here, when the host-side command runs; nothing else in healthcheck/ touches
Docker).
"""

import sys

from engine.errors import ClusterError


def head_container(name: str) -> str:
    return f"{name}-head"


def exec_in_head(name: str, args: list[str]) -> int:
    """Run `args` in `<name>-head`, print its output, return its exit code."""
    from cluster import backend

    client = backend.client()
    head = head_container(name)
    container = backend.get(client, head)
    if container is None or container.status != "running":
        raise ClusterError(f"container {head} is not running; start the cluster with "
                           f"`onenode cluster up --name {name}` (or run_cluster ... --head)")
    code, output = backend.exec_in(client, head, args)
    sys.stdout.write(output)
    sys.stdout.flush()
    return code
