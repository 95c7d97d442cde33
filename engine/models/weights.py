"""Weight readers with one call, `fetch(name, dim, start, end)`, that returns only the requested
slice: safetensors reads just those bytes from disk (a sharded checkpoint through its
model.safetensors.index.json; FP8 block-quantized weights are dequantized tile by tile,
engine/models/fp8.py); GGUF tensors are dequantized once."""

import json
from pathlib import Path

from engine.models import fp8
from onenode.errors import ModelLoadError

FP8_DTYPE = "F8_E4M3"  # safetensors' name for float8_e4m3fn


class SafetensorsReader:
    def __init__(self, directory: Path, fp8_block: tuple[int, ...] = (128, 128)):
        from safetensors import safe_open

        index = directory / "model.safetensors.index.json"
        if index.exists():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
            absent = [f for f in files if not (directory / f).exists()]
            if absent:
                raise ModelLoadError(f"{directory} lacks {len(absent)} of the {len(files)} "
                                     f"shards its model.safetensors.index.json lists (first: "
                                     f"{absent[0]}); finish the download")
        else:
            files = sorted(p.name for p in directory.glob("*.safetensors"))
        self.handles = {f: safe_open(str(directory / f), framework="pt") for f in files}
        self.where = {name: f for f, h in self.handles.items() for name in h.keys()}
        self.fp8_block = tuple(fp8_block) or (128, 128)

    def names(self) -> set[str]:
        """Weight names; FP8 scales are read with their weight, not on their own."""
        return {n for n in self.where if not n.endswith(fp8.SCALE_SUFFIX)}

    def _slice(self, name: str):
        f = self.where.get(name)
        if f is None:
            raise ModelLoadError(f"weight {name!r} is missing from the checkpoint; is the "
                                 f"config.json architecture right for these weights?")
        return self.handles[f].get_slice(name)

    def fetch(self, name: str, dim: int | None, start: int | None, end: int | None):
        sl = self._slice(name)
        w = _cut(sl, dim, start, end)
        if sl.get_dtype() != FP8_DTYPE:
            return w
        if fp8.scale_name(name) not in self.where:
            raise ModelLoadError(f"{name} is float8 without {fp8.scale_name(name)}; onenode "
                                 f"reads FP8 only block-quantized (DeepSeek-V3 style)")
        scale = self._slice(fp8.scale_name(name))
        if dim is None:
            return fp8.dequantize(w, scale[:], self.fp8_block)
        lo, hi = fp8.tile_range(start, end, self.fp8_block[dim])
        return fp8.dequantize(w, _cut(scale, dim, lo, hi), self.fp8_block,
                              start if dim == 0 else 0, start if dim == 1 else 0)


def _cut(sl, dim, start, end):
    if dim is None:
        return sl[:]
    return sl[start:end] if dim == 0 else sl[:, start:end]
