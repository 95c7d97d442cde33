"""Bounded waits for a node to be ready, reading only the container's own state and logs.

`ray start --block` prints "Ray runtime started" once the node is up (head: GCS answers; worker:
registered at the head). A wrong or missing token shows as Unauthenticated/InvalidAuthToken and
Ray would retry forever, so it is turned into a one-line error here.
"""

import socket
import time

from cluster import backend
from onenode.errors import ClusterError

READY_MARK = "Ray runtime started"
AUTH_MARKS = ("InvalidAuthToken", "Unauthenticated", "UNAUTHENTICATED")


def wait_ready(c, name: str, role: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        container = backend.get(c, name)
        if container is None:
            raise ClusterError(f"container {name} disappeared while starting")
        container.reload()
        text = backend.logs_tail(container)
        if any(m in text for m in AUTH_MARKS):
            raise ClusterError(f"{name} was refused by the head: the Ray token does not match "
                               f"(InvalidAuthToken); copy the head's token file to this host and "
                               f"pass it with --ray-token-file (auth stays on: no --no-ray-auth)")
        if READY_MARK in text:
            return
        if container.status in ("exited", "dead"):
            last = " | ".join(text.strip().splitlines()[-3:])[:300]
            raise ClusterError(f"{name} exited while starting ({last}); see `docker logs {name}`")
        if time.monotonic() >= deadline:
            what = "register at the head" if role == "worker" else "start the Ray head"
            raise ClusterError(f"{name} did not {what} within {timeout:.0f}s; check that HEAD_IP "
                               f"is reachable from this host on port 6379 and see "
                               f"`docker logs {name}`")
        time.sleep(0.5)


def wait_reachable(host: str, port: int, timeout: float) -> bool:
    """True once a TCP connection to host:port succeeds (a worker's view of the head's GCS)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=2):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(1)
