"""Where things live on disk: the Hugging Face cache (huggingface_hub's rule), onenode's own
cache (anything it can rebuild), and its config (what it cannot: the Ray token that every node
shares), on the host and inside cluster containers. One definition for every package."""

import os
from pathlib import Path

# Every node container mounts the host's HF_HOME here (vLLM's run_cluster.sh does the same).
CONTAINER_HF_HOME = "/root/.cache/huggingface"


def hf_home() -> Path:
    """$HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface: huggingface_hub's
    rule, so `onenode cluster up` mounts the cache the user's other tools already fill."""
    if os.environ.get("HF_HOME"):
        return Path(os.path.expanduser(os.environ["HF_HOME"]))
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "huggingface"


def hf_hub_cache() -> Path:
    """Where hub downloads live: $HF_HUB_CACHE, else HF_HOME/hub (huggingface_hub's layout:
    models--ORG--NAME/{refs,snapshots,blobs})."""
    return Path(os.environ.get("HF_HUB_CACHE") or hf_home() / "hub")


def onenode_cache() -> Path:
    """onenode's own cache (downloaded wheels, wheelhouse, tokens): ~/.cache/onenode."""
    return Path(os.environ.get("ONENODE_CACHE") or Path.home() / ".cache" / "onenode")


def onenode_config() -> Path:
    """What a cache cleanup must not delete (a node's bind-mounted Ray token): $ONENODE_CONFIG,
    else $XDG_CONFIG_HOME/onenode, else ~/.config/onenode (the XDG base directory rule)."""
    if os.environ.get("ONENODE_CONFIG"):
        return Path(os.path.expanduser(os.environ["ONENODE_CONFIG"]))
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "onenode"
