"""Ray token authentication: one token file (mode 600) shared by every node as a read-only mount.

The token never appears in env or argv, so `docker inspect` and `ps` do not show it. The operator
copies the same file to each worker host (see docs/runbook.md)."""

import os
import secrets
from pathlib import Path

from onenode.errors import ConfigError
from onenode.paths import onenode_cache

DEFAULT_TOKEN = onenode_cache() / "ray_token"


def token_path(path: str | Path | None = None) -> Path:
    """The token file a node would use (nothing is created)."""
    return (Path(path).expanduser() if path else DEFAULT_TOKEN).resolve()


def ensure_token(path: str | Path | None = None, create: bool = True) -> Path:
    """Return the token file, generating one (32 random bytes, hex) when allowed and missing."""
    token = Path(path).expanduser() if path else DEFAULT_TOKEN
    if token.exists():
        if token.stat().st_size == 0:
            raise ConfigError(f"Ray token file {token} is empty; delete it to regenerate or copy "
                              f"the head's token file here")
        return token.resolve()
    if not create:
        raise ConfigError(f"Ray token file {token} not found; copy the head's token file to this "
                          f"host (same path) or pass --ray-token-file")
    token.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return token.resolve()
