"""Which kernel decodes a device's rows in place, and the fallback when that kernel fails.

CPU rows go to the C++ kernel (engine/kernels/paged_decode.cpp), CUDA rows to the Triton one
(engine/kernels/triton_decode.py). Triton compiles on first launch, on the user's machine: a
missing Python.h, an old driver or a shared-memory limit shows up there, not in our tests. Such a
failure must not stop a server at load (warm-up runs a decode step), so the first one turns the
device's kernel off for the process with one warning that names the cause, and decode rows take
the SDPA path (engine/layers/attention.py) from then on.
"""

import logging

import torch

from engine.kernels.build import load as load_cpu_kernels
from engine.layers.sliding_window import kernel_window

log = logging.getLogger("onenode.attention")
_failed: dict[str, str] = {}  # device type -> why its kernel was turned off


class KernelFailed(RuntimeError):
    """The in-place kernel failed once and is now off; the caller decodes through SDPA."""


def available(device_type: str) -> bool:
    """Whether this device has an in-place decode kernel (built, enabled, not failed)."""
    if device_type in _failed:
        return False
    if device_type == "cpu":
        return load_cpu_kernels()
    if device_type == "cuda":
        return _triton_decode().enabled()
    return False


def usable(device_type: str) -> bool:
    """Per step: a kernel that `available` allowed at cache allocation has not failed since."""
    return device_type not in _failed


def failure(device_type: str) -> str | None:
    return _failed.get(device_type)


def kernel_for(device_type: str):
    if device_type == "cuda":
        return _triton_decode().paged_decode
    return torch.ops.onenode.paged_decode


def decode(q, k_cache, v_cache, tables, lens, scale: float,
           window: int | None = None) -> torch.Tensor:
    """The device's kernel on q: [n, heads, d] -> [n, heads*d], each row seeing its context's
    last `window` keys (None: all); KernelFailed when it fails."""
    device_type = q.device.type
    try:
        return kernel_for(device_type)(q, k_cache, v_cache, tables, lens, scale,
                                       window=kernel_window(window))
    except Exception as exc:  # noqa: BLE001 - any compile or launch error means "use SDPA"
        lines = str(exc).strip().splitlines()
        cause = f"{type(exc).__name__}: {lines[0][:200] if lines else 'no message'}"
        _failed[device_type] = cause
        log.warning("the %s decode kernel failed (%s); decode attention uses SDPA from now on "
                    "(set ONENODE_%s_KERNELS=0 to skip the kernel)", device_type, cause,
                    device_type.upper())
        raise KernelFailed(cause) from exc


def _triton_decode():
    """The CUDA kernel's module, imported on first use: importing Triton costs a CPU-only
    engine ~0.3 s of start-up for nothing."""
    from engine.kernels import triton_decode

    return triton_decode
