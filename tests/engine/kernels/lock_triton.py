"""The CUDA lock's Triton (images/lock-cuda.txt), installed beside the venv for the interpreter.

GPUs run the Triton of the CUDA lock; the CPU venv has another one (xgrammar pulls in a newer
Triton), and a kernel that the interpreter of one accepts may not compile on the other. So the
kernel matrix also runs under the CUDA lock's version: hash-checked from the lock, without its
dependencies, into ~/.cache/onenode/triton-<version>, which goes first on the subprocess's
PYTHONPATH. `make triton-cuda` installs it ahead of time; the tests install it on first use.

    python -m tests.engine.kernels.lock_triton   # prints the directory
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from onenode.paths import onenode_cache

LOCK = Path(__file__).resolve().parents[3] / "images" / "lock-cuda.txt"


def pinned(lock: Path = LOCK) -> tuple[str, str]:
    """(version, the lock's requirement lines for triton, hashes included)."""
    text = lock.read_text()
    found = re.search(r"^triton==(\S+) \\\n((?:    --hash=\S+(?: \\)?\n)+)", text, re.MULTILINE)
    if not found:
        raise LookupError(f"{lock} pins no triton")
    return found.group(1), found.group(0)


def target_dir(version: str) -> Path:
    return onenode_cache() / f"triton-{version}"


def install(timeout: float = 600) -> Path:
    """The directory holding the lock's triton package; installed once (atomically: a temp
    directory renamed into place). Raises RuntimeError with pip's last line on failure."""
    version, requirement = pinned()
    target = target_dir(version)
    if (target / "triton" / "__init__.py").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(requirement)
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--require-hashes",
               "--target", str(Path(tmp) / "site"), "-r", str(req)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"pip could not install triton=={version}: {last}")
        try:
            os.rename(Path(tmp) / "site", target)
        except OSError:  # another process installed it first
            shutil.rmtree(Path(tmp) / "site", ignore_errors=True)
    return target


if __name__ == "__main__":
    try:
        print(install())
    except (RuntimeError, LookupError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
