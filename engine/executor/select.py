"""Which executor runs the workers: vLLM's default rule, overridable (pure)."""

import os
import sys


def select_backend(requested: str | None, world_size: int, in_ray_placement_group: bool,
                   local_devices: int) -> str:
    """world 1 -> uni; already inside a Ray placement group -> ray; enough devices on this node ->
    mp; otherwise ray (join the running cluster)."""
    if requested:
        return requested
    if world_size == 1:
        return "uni"
    if in_ray_placement_group:
        return "ray"
    if local_devices >= world_size:
        return "mp"
    return "ray"


def in_ray_placement_group() -> bool:
    # Only when Ray is already imported: the mp path must not import Ray at all.
    if "ray" not in sys.modules:
        return False
    import ray

    return ray.is_initialized() and ray.util.get_current_placement_group() is not None


def local_devices(device: str) -> int:
    if device in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            return torch.cuda.device_count()
    return os.cpu_count() or 1


def make_executor(backend: str, config, partition, source=None):
    if backend == "uni":
        from engine.executor.uni import UniExecutor as cls
    elif backend == "mp":
        from engine.executor.mp import MpExecutor as cls
    else:
        from engine.executor.ray import RayExecutor as cls
    return cls(config, partition, source)
