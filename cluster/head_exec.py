"""Run a command in a cluster's head container from the host and relay its output (used by
`onenode cluster healthcheck`)."""

import sys

from cluster import backend
from onenode.errors import ClusterError
from onenode.names import head_container


def exec_in_head(name: str, args: list[str]) -> int:
    """Run `args` in the head container of cluster `name`, print its output, return its exit code."""
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
