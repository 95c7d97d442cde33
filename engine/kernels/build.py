"""Build and load the engine's C++ CPU kernels, once per machine, with a PyTorch fallback.

The shared library is compiled with the system C++ compiler against the installed torch's headers
and cached under a name that hashes the source, torch's version, the compiler flags and the
architecture: a torch upgrade or a source change builds a new one, a second process reuses it.
`make` and the image build compile it ahead of time (`python -m engine.kernels`), so neither a
first `generate` nor a container start pays the ~15 s compile. Without a compiler, or with
ONENODE_CPU_KERNELS=0, `load()` returns False and the engine runs its pure-PyTorch paths.
"""

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

log = logging.getLogger("onenode.kernels")
HERE = Path(__file__).parent
SOURCES = (HERE / "paged_decode.cpp", HERE / "skinny_gemm.cpp", HERE / "fused_ops.cpp",
           HERE / "cache_write.cpp", HERE / "prefill_attention.cpp")
HEADERS = (HERE / "simd.h", HERE / "paged_decode_avx512.h")
_loaded: bool | None = None


def kernel_dir() -> Path:
    return Path(os.environ.get("ONENODE_KERNEL_DIR",
                               Path.home() / ".cache" / "onenode" / "kernels"))


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags() -> list[str]:
    """AVX2+FMA where this CPU has them (every x86 server since 2013), and AVX-512 where it has
    that too (the skinny GEMM's wide path); the build is per machine (or per image build host),
    and the flags are part of the cache key."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return []
    info = _cpuinfo()
    if " avx2" not in info or " fma" not in info:
        return []
    avx512 = all(f" {f}" in info for f in ("avx512f", "avx512bw", "avx512vl", "avx512dq"))
    return ["-mavx2", "-mfma", "-mf16c"] + (
        ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq"] if avx512 else [])


def cpu_vendor() -> str:
    """/proc/cpuinfo's vendor_id (GenuineIntel, AuthenticAMD, ...); '' where there is none."""
    for line in _cpuinfo().splitlines():
        if line.startswith("vendor_id"):
            return line.split(":", 1)[1].strip()
    return ""


def compile_command(out: Path) -> list[str]:
    inc = Path(torch.__file__).parent / "include"
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    return [os.environ.get("CXX", "c++"), "-shared", "-fPIC", "-std=c++17", "-O3", "-fopenmp",
            "-ffp-contract=off",
            f"-D_GLIBCXX_USE_CXX11_ABI={abi}", *cpu_flags(), f"-I{inc}",
            *map(str, SOURCES), f"-L{Path(torch.__file__).parent / 'lib'}", "-lc10", "-ltorch_cpu", "-o", str(out)]


def library_path() -> Path:
    h = hashlib.sha256(torch.__version__.encode() + platform.machine().encode())
    h.update(" ".join(cpu_flags()).encode())
    for src in SOURCES + HEADERS:
        h.update(src.read_bytes())
    return kernel_dir() / f"onenode_kernels-{h.hexdigest()[:12]}.so"


def build() -> Path:
    """Compile into the cache (atomically: concurrent builders each write a temp file and the
    last rename wins with identical bytes). Raises RuntimeError with the compiler's message."""
    target = library_path()
    if target.exists():
        return target
    if not shutil.which(os.environ.get("CXX", "c++")):
        raise RuntimeError("no C++ compiler (install g++, or set CXX)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        done = subprocess.run(compile_command(out), check=False, capture_output=True,
                              text=True)
        if done.returncode != 0:
            raise RuntimeError(f"compiling the CPU kernels failed: {done.stderr[-2000:]}")
        os.replace(out, target)
    return target


def load() -> bool:
    """True when torch.ops.onenode.* are usable (building them if needed); False: use the
    PyTorch fallback. Logged once per process either way."""
    global _loaded
    if _loaded is None:
        _loaded = _try_load()
    return _loaded


def enabled() -> bool:
    """ONENODE_CPU_KERNELS=0 turns off every CPU fast path (these kernels, oneDNN weight packing
    and the malloc tuning of engine/worker/cpu_malloc.py): the engine then runs plain PyTorch
    ops, e.g. to rule them out when debugging."""
    return os.environ.get("ONENODE_CPU_KERNELS", "1") != "0"


def takes(x: torch.Tensor) -> bool:
    """Whether the kernels can run on `x`: a CPU tensor, and the library loaded (or built)."""
    return x.device.type == "cpu" and load()


def _try_load() -> bool:
    if not enabled():
        log.info("CPU kernels off (ONENODE_CPU_KERNELS=0): PyTorch attention fallback")
        return False
    try:
        path = build()
        torch.ops.load_library(str(path))
    except (RuntimeError, OSError) as e:
        log.warning("CPU kernels unavailable, using the slower PyTorch attention: %s",
                    str(e).splitlines()[0] if str(e) else type(e).__name__)
        return False
    log.debug("CPU kernels loaded from %s", path)
    return True
