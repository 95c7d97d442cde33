"""Resolve the `model` argument to files on disk: an HF directory (config.json + safetensors) or a
GGUF file (or a directory holding exactly one). Only local paths work without a hub; the error says
how to point at one."""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from engine.model_config import ModelConfig, model_config_from_hf
from engine.models.gguf_config import gguf_hf_config
from onenode.errors import ModelLoadError
from onenode.paths import hf_home


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
    """A hub id already downloaded into HF_HOME/hub (the layout huggingface_hub writes)."""
    if model.count("/") != 1:
        return None
    repo = hf_home() / "hub" / f"models--{model.replace('/', '--')}"
    if revision:
        ref = repo / "refs" / revision  # a branch or tag names a commit; else it is one
        commit = ref.read_text().strip() if ref.is_file() else revision
        snap = repo / "snapshots" / commit
        return snap if snap.is_dir() else None
    ref = repo / "refs" / "main"
    if ref.is_file() and (repo / "snapshots" / ref.read_text().strip()).is_dir():
        return repo / "snapshots" / ref.read_text().strip()
    snaps = sorted((repo / "snapshots").glob("*"))
    return snaps[-1] if snaps else None


def _missing(model: str, revision: str | None = None):
    if revision and model.count("/") == 1:
        raise ModelLoadError(f"revision {revision!r} of {model!r} is not in the HF cache; "
                             f"download that revision where the hub is reachable, or drop "
                             f"--revision to use the cached one")
    if model.count("/") == 1 and not model.startswith(("/", ".", "~")):
        raise ModelLoadError(
            f"model {model!r} is not a local path and is not in the HF cache; this machine cannot "
            f"download from the hub: download it where the hub is reachable (HF_TOKEN for gated "
            f"models) and pass the local directory, at the same path on every node")
    raise ModelLoadError(f"model path {model} does not exist on this node; put the model at the "
                         f"same path on every node (mount HF_HOME) or fix the path")
