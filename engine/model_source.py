"""Resolve the `model` argument to files on disk: an HF directory (config.json + safetensors) or a
GGUF file (or a directory holding exactly one). A hub id (ORG/NAME) resolves through
huggingface_hub: the cached snapshot that `refs/main` names, else a download (HF_TOKEN for gated
models) unless HF_HUB_OFFLINE is set; the error says how to point at a local copy."""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from engine.model_config import ModelConfig, model_config_from_hf
from engine.models.gguf_config import gguf_hf_config
from onenode.errors import ModelLoadError
from onenode.paths import hf_hub_cache


@dataclass(frozen=True)
class ModelSource:
    path: Path  # directory holding the files
    gguf_file: str | None  # file name inside `path` when the model is a GGUF
    hf_config: dict
    model_config: ModelConfig


def resolve_model(model: str, revision: str | None = None) -> ModelSource:
    """`revision` (vLLM's --revision) picks a branch, tag or commit of a hub id in the HF cache;
    a local directory is taken as it is."""
    path = Path(os.path.expanduser(model))
    if not path.exists():
        path = _from_hf_cache(model, revision) or _missing(model, revision)
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelLoadError(f"{path} is a file but not a .gguf; pass a GGUF file or an HF "
                                 f"model directory (config.json + *.safetensors)")
        return _gguf(path.parent, path.name)
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if not (path / "config.json").exists():
        if len(ggufs) == 1:
            return _gguf(path, ggufs[0])
        found = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
        raise ModelLoadError(f"{path} has no config.json (found: {found}); pass a directory "
                             f"saved with save_pretrained or a single .gguf file")
    hf_config = json.loads((path / "config.json").read_text())
    model_config = model_config_from_hf(hf_config)  # unsupported architectures fail first
    if not list(path.glob("*.safetensors")):
        raise ModelLoadError(f"{path} has config.json but no *.safetensors weights; save the "
                             f"model with save_pretrained(safe_serialization=True)")
    return ModelSource(path, None, hf_config, model_config)


def _gguf(directory: Path, name: str) -> ModelSource:
    cfg = gguf_hf_config(directory / name)  # weights are dequantized to fp32 at load
    return ModelSource(directory, name, cfg, model_config_from_hf(cfg))


def _from_hf_cache(model: str, revision: str | None = None) -> Path | None:
    """A hub id: the snapshot huggingface_hub resolves (the revision `refs/main` (or `revision`) points to in
    HF_HOME/hub), downloaded first where the hub is reachable and HF_HUB_OFFLINE is unset."""
    if model.count("/") != 1 or model.startswith(("/", ".", "~")):
        return None
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, revision=revision, cache_dir=hf_hub_cache(),
                                      local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached (LocalEntryNotFoundError) or a bad repo id
        pass
    if _hub_offline():
        return None
    try:
        return Path(snapshot_download(model, revision=revision, cache_dir=hf_hub_cache(),
                                      token=os.environ.get("HF_TOKEN") or None))
    except Exception as exc:  # noqa: BLE001 - network, auth (gated) or unknown repo: one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ModelLoadError(f"model {model!r} is not cached in {hf_hub_cache()} and the "
                             f"download failed ({first}); set HF_TOKEN for gated models, or "
                             f"download it where the hub is reachable and pass the local "
                             f"directory, at the same path on every node") from None


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _missing(model: str, revision: str | None = None):
    if revision and model.count("/") == 1:
        raise ModelLoadError(f"revision {revision!r} of {model!r} is not in the HF cache; "
                             f"download that revision where the hub is reachable, or drop "
                             f"--revision to use the cached one")
    if model.count("/") == 1 and not model.startswith(("/", ".", "~")):
        raise ModelLoadError(
            f"model {model!r} is not a local path and is not in the HF cache ({hf_hub_cache()}), "
            f"and HF_HUB_OFFLINE is set: download it where the hub is reachable (HF_TOKEN for "
            f"gated models) and pass the local directory, at the same path on every node")
    raise ModelLoadError(f"model path {model} does not exist on this node; put the model at the "
                         f"same path on every node (mount HF_HOME) or fix the path")
