"""Ray token authentication: one token file (mode 600) shared by every node as a read-only mount.

The token never appears in env or argv, so `docker inspect` and `ps` do not show it. The operator
copies the same file to each worker host (see docs/runbook.md). It lives in onenode's config
folder (~/.config/onenode), not its cache: Docker cannot restart a node whose bind-mounted token
was cleaned away. A token left in the old place (~/.cache/onenode) is copied over once."""

import logging
import os
import secrets
import shutil
from pathlib import Path

from onenode.errors import ConfigError
from onenode.paths import onenode_cache, onenode_config

DEFAULT_TOKEN = onenode_config() / "ray_token"
LEGACY_TOKEN = onenode_cache() / "ray_token"  # before 2026-12: a cache cleanup deleted it

log = logging.getLogger("onenode.auth")


def token_path(path: str | Path | None = None) -> Path:
    """The token file a node would use (nothing is created)."""
    return (Path(path).expanduser() if path else DEFAULT_TOKEN).resolve()


def ensure_token(path: str | Path | None = None, create: bool = True) -> Path:
    """Return the token file, generating one (32 random bytes, hex) when allowed and missing."""
    token = Path(path).expanduser() if path else DEFAULT_TOKEN
    if not path:
        migrate_token(LEGACY_TOKEN, DEFAULT_TOKEN)
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


def migrate_token(old: Path, new: Path) -> bool:
    """Copy a token from the old cache location to the config one (mode 600), keeping the old
    file: nodes started before still mount it until they are re-created."""
    if new.exists() or not old.is_file():
        return False
    new.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as dst, open(old, "rb") as src:
        shutil.copyfileobj(src, dst)
    log.warning("the Ray token now lives in %s (copied from %s, where a cache cleanup could "
                "delete it); re-create nodes started before with --replace so they mount the new "
                "file", new, old)
    return True
