"""Secret masking: no onenode output shows the value of a variable that looks like a secret."""

# One definition of "looks like a secret" for the whole product (the engine forwards env by it).
from engine.executor.ray_env import SECRET_MARKERS as MARKERS, is_secret  # noqa: F401


def mask_value(name: str, value: str | None) -> str | None:
    if value is None or not is_secret(name):
        return value
    return "***" if value else ""


def mask_env(env: dict[str, str]) -> dict[str, str]:
    return {k: mask_value(k, v) for k, v in env.items()}


def mask_text(text: str, secrets: list[str]) -> str:
    """Replace known secret values wherever they appear (e.g. in captured logs)."""
    for s in sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True):
        text = text.replace(s, "***")
    return text
