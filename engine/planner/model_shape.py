"""Find a model's shape for `onenode plan` without loading weights.

Accepted: a well-known name or hub id (engine/planner/known_models.py), a local config.json or a
directory holding one, or a GGUF file (or a directory holding exactly one) whose metadata is read.
This is the I/O edge of the planner: everything after it is pure.
"""

import json
from pathlib import Path

from engine.model_config import ModelConfig, model_config_from_hf
from engine.models.gguf_config import gguf_hf_config
from engine.planner.known_models import known_model, known_model_names
from onenode.errors import ModelLoadError


def load_model_shape(spec: str) -> tuple[str, ModelConfig, str]:
    """(name for `onenode serve`, ModelConfig, where the shape came from)."""
    path = Path(spec).expanduser()
    if path.exists():
        return str(path), _from_path(path), f"local {path}"
    known = known_model(spec)
    if known:
        hub_id, cfg = known
        return hub_id, model_config_from_hf(cfg), f"built-in shape of {hub_id}"
    raise ModelLoadError(
        f"{spec!r} is neither a local config.json/GGUF/model directory nor a known model; "
        f"give a path or one of: {', '.join(known_model_names())}")


def _from_path(path: Path) -> ModelConfig:
    if path.is_dir():
        if (path / "config.json").exists():
            return _from_config_json(path / "config.json")
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return gguf_model_config(ggufs[0])
        raise ModelLoadError(f"{path} has no config.json and {len(ggufs)} .gguf files; point "
                             f"at the config.json or at one .gguf file")
    if path.suffix == ".gguf":
        return gguf_model_config(path)
    return _from_config_json(path)


def _from_config_json(path: Path) -> ModelConfig:
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path} as a HF config.json ({exc}); give a valid "
                             f"config.json, a GGUF file or a known model name") from None
    return model_config_from_hf(cfg)


def gguf_model_config(path: Path) -> ModelConfig:
    """From the GGUF metadata only: the header, never the tensors."""
    return model_config_from_hf(gguf_hf_config(path))
