"""Weight readers with one call, `fetch(name, dim, start, end)`, that returns only the requested
slice: safetensors reads just those bytes from disk; GGUF tensors are dequantized once."""

import json
from pathlib import Path

from onenode.errors import ModelLoadError


class SafetensorsReader:
    def __init__(self, directory: Path):
        from safetensors import safe_open

        index = directory / "model.safetensors.index.json"
        if index.exists():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
        else:
            files = sorted(p.name for p in directory.glob("*.safetensors"))
        self.handles = {f: safe_open(str(directory / f), framework="pt") for f in files}
        self.where = {name: f for f, h in self.handles.items() for name in h.keys()}

    def names(self) -> set[str]:
        return set(self.where)

    def fetch(self, name: str, dim: int | None, start: int | None, end: int | None):
        f = self.where.get(name)
        if f is None:
            raise ModelLoadError(f"weight {name!r} is missing from the checkpoint; is the "
                                 f"config.json architecture right for these weights?")
        sl = self.handles[f].get_slice(name)
        if dim is None:
            return sl[:]
        return sl[start:end] if dim == 0 else sl[:, start:end]
