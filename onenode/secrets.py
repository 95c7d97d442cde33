"""Secret rules: which names are secrets, and masking of their values (one definition for the
whole product: cluster output, engine env forwarding, healthcheck inventory, server logs)."""

import logging
from pathlib import Path

from onenode.errors import ConfigError

SECRET_MARKERS = ("TOKEN", "KEY", "SECRET", "PASSWORD")
MASK = "***"


def is_secret(name: str) -> bool:
    return any(m in name.upper() for m in SECRET_MARKERS)


def mask_value(name: str, value: str | None) -> str | None:
    if value is None or not is_secret(name):
        return value
    return MASK if value else ""


def mask_env(env: dict[str, str]) -> dict[str, str]:
    return {k: mask_value(k, v) for k, v in env.items()}


def secret_values(env: dict[str, str]) -> list[str]:
    """Values to mask from an environment: those of secret-named variables, except variables that
    name a file holding the secret (RAY_AUTH_TOKEN_PATH, ONENODE_API_KEY_FILE): a path is no
    secret, and masking it would garble ordinary log lines."""
    return [v for k, v in env.items() if is_secret(k) and not k.endswith(("_PATH", "_FILE"))]


def mask_text(text: str, secrets: list[str]) -> str:
    """Replace known secret values wherever they appear (e.g. in captured logs). Values shorter
    than 4 characters are left alone: masking them would garble ordinary text."""
    for s in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(s, MASK)
    return text


class SecretFilter(logging.Filter):
    """Redacts known secret values (API key, HF token) from every log record, whoever logs it."""

    def __init__(self, values):
        super().__init__()
        self.values = [v for v in values if v and len(v) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.values:
            message = record.getMessage()
            if any(v in message for v in self.values):
                record.msg, record.args = mask_text(message, self.values), ()
        return True


def read_key_file(path: str | Path, flag: str = "--api-key-file") -> tuple[Path, str]:
    """(resolved path, key) of a file holding one secret (surrounding whitespace dropped); a
    missing, unreadable or empty file is a one-line error naming `flag`."""
    file = Path(path).expanduser()
    try:
        key = file.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not text"
        raise ConfigError(f"{flag} {file} cannot be read ({reason}); pass a file that holds "
                          f"the key, e.g. made with `openssl rand -hex 32 > FILE`") from None
    if not key:
        raise ConfigError(f"{flag} {file} is empty; write the key into it")
    return file.resolve(), key
