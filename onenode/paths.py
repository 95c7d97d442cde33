"""Where things live on disk: the Hugging Face cache (huggingface_hub's rule) and onenode's own
cache, on the host and inside cluster containers. One definition for every package."""

import os
from pathlib import Path

# Every node container mounts the host's HF_HOME here (vLLM's run_cluster.sh does the same).
CONTAINER_HF_HOME = "/root/.cache/huggingface"


def hf_home() -> Path:
    """$HF_HOME, else ~/.cache/huggingface, as huggingface_hub resolves it."""
    return Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")


def onenode_hf_home() -> Path:
    """The HF_HOME that `onenode cluster up` and the demo use: $ONENODE_HF_HOME, else
    ~/.cache/onenode/hf."""
    return Path(os.environ.get("ONENODE_HF_HOME") or Path.home() / ".cache" / "onenode" / "hf")


def onenode_cache() -> Path:
    """onenode's own cache (downloaded wheels, wheelhouse, tokens): ~/.cache/onenode."""
    return Path(os.environ.get("ONENODE_CACHE") or Path.home() / ".cache" / "onenode")
