"""Host files a node container needs to (re)start: its bind-mount sources (pure).

Docker refuses to restart a container whose bind source is gone, silently for a restart policy.
The Ray token and the API key are such sources, so a cleanup of the folder that holds them takes
a node down at its next crash. `onenode cluster status` and `run_cluster` name each missing one in
a line with its fix.
"""

import os
from collections.abc import Callable, Iterable

from cluster.api_key import API_KEY_MOUNT
from cluster.spec import TOKEN_MOUNT
from onenode.paths import CONTAINER_HF_HOME

_FIXES = {
    TOKEN_MOUNT: "copy the head's Ray token file there (same content on every node), or "
                 "re-create the node with `run_cluster ... --replace`",
    API_KEY_MOUNT: "restore the API key file, or re-create the head with `run_cluster ... "
                   "--replace --api-key-file FILE`",
    CONTAINER_HF_HOME: "re-create the HF_HOME directory and put the model back",
}


def missing_bind_sources(node: str, mounts: Iterable[tuple[str, str]],
                         exists: Callable[[str], bool] = os.path.exists) -> list[str]:
    """One line per (host source, container target) whose source is missing on this host."""
    lines = []
    for source, target in mounts:
        if exists(source):
            continue
        fix = _FIXES.get(target, "restore it, or re-create the node with `run_cluster ... "
                                 "--replace`")
        lines.append(f"{node}: {source} (mounted at {target}) is missing on this host, so Docker "
                     f"cannot restart this node; {fix}")
    return lines
