"""FP8 block-quantized checkpoints (DeepSeek-V3/R1, transformers' "fp8" quant_method): each
float8_e4m3fn weight comes with `<name>_scale_inv`, one float32 scale per 128 x 128 tile.

onenode has no FP8 GEMM, so weights are dequantized at load, tile by tile, into the serving
dtype: w[i, j] * scale_inv[i // 128, j // 128], computed in float32 as DeepSeek's reference
`weight_dequant` does. Only the slice a rank loads is dequantized. Before loading,
`check_dequantized_fit` refuses in one line when the dequantized weights cannot fit.
"""

import os

import torch

from onenode.errors import ResourceError
from onenode.units import human_bytes

SCALE_SUFFIX = "_scale_inv"
FP8_DTYPES = (torch.float8_e4m3fn,)


def scale_name(name: str) -> str:
    return name + SCALE_SUFFIX


def dequantize(w: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int],
               row0: int = 0, col0: int = 0) -> torch.Tensor:
    """Float32 weights of the FP8 tile-slice `w`, whose first element is (row0, col0) of the
    full matrix; `scale_inv` holds the scales of the tiles it touches, starting with the tile
    of (row0, col0)."""
    br, bc = block
    rows, cols = w.shape[0], (w.shape[1] if w.dim() > 1 else 1)
    scale = scale_inv.float().reshape(scale_inv.shape[0], -1)
    scale = scale.repeat_interleave(br, 0)[row0 % br: row0 % br + rows]
    scale = scale.repeat_interleave(bc, 1)[:, col0 % bc: col0 % bc + cols]
    return w.float() * scale.reshape(w.shape)


def tile_range(start: int, end: int, size: int) -> tuple[int, int]:
    """Scale rows (or columns) covering elements [start, end) with tiles of `size`."""
    return start // size, -(-end // size)


def check_before_load(model, dtype: torch.dtype, device: torch.device, config, tp: int,
                      partition: list[int]) -> None:
    """For an FP8 checkpoint (ModelConfig `model`, EngineConfig `config`): the planner's count of
    this rank's weights in the serving dtype must fit before any of them is read."""
    if model.quantization != "fp8":
        return
    from engine.planner.memory import weights_bytes_per_gpu

    weights = weights_bytes_per_gpu(model, dtype.itemsize, tp, len(partition), partition)
    check_dequantized_fit(weights, dtype, device, config.gpu_memory_utilization,
                          config.kv_cache_space_gib, tp, len(partition))


def check_dequantized_fit(weights_bytes: int, dtype: torch.dtype, device: torch.device,
                          utilization: float, kv_cache_space_gib: float | None, tp: int,
                          pp: int) -> None:
    """Refuse before loading when one rank's dequantized weights exceed what its device can
    give them: utilization x GPU memory on CUDA (the engine's budget, before any KV), or RAM
    less the KV cache space on CPU."""
    if device.type == "cuda":
        have = utilization * torch.cuda.mem_get_info(device)[1]
        what = f"{utilization:g} x {human_bytes(have / utilization)} of GPU memory"
    else:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        kv = (4.0 if kv_cache_space_gib is None else kv_cache_space_gib) * 2**30
        have, what = ram - kv, f"{human_bytes(ram)} of RAM less {human_bytes(kv)} of KV cache"
    if weights_bytes <= have:
        return
    ranks = -(-weights_bytes * tp * pp // max(int(have), 1))
    raise ResourceError(
        f"this FP8 checkpoint dequantizes to {human_bytes(weights_bytes)} of {dtype} weights "
        f"per rank at TP={tp} x PP={pp}, more than the {what} ({human_bytes(have)}); about "
        f"{ranks} ranks of this size would hold it: raise --tensor-parallel-size / "
        f"--pipeline-parallel-size (`onenode plan MODEL` picks the layout)")
