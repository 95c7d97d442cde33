"""How much GPU memory the KV cache may take: vLLM's profile, as differences of snapshots.

The budget is `gpu_memory_utilization` x total, minus what this engine adds: its weights (torch
memory allocated while loading them), the activation peak of a dummy forward (the peak over what
was allocated before it), and the non-torch memory that appeared since the engine started (NCCL
and cuBLAS workspaces). Whatever the process or others held before is not this engine's: the
budget must instead be free at start, or the engine says so. Counting all of a process's torch
memory as weights would shrink the cache by whatever a caller (a test's HF model, an earlier engine
in the same process) still holds.
"""

from dataclasses import dataclass

import torch

from engine.core import kv_blocks
from onenode.errors import ResourceError

GiB = 1 << 30


@dataclass(frozen=True, slots=True)
class MemorySnapshot:
    allocated: int  # torch's live tensors
    peak: int  # torch's highest `allocated` since its peak was last reset
    reserved: int  # torch's caching allocator, live tensors included
    free: int
    total: int

    @property
    def non_torch(self) -> int:
        """Used on the device but not by this process's torch allocator."""
        return max(0, self.total - self.free - self.reserved)


def snapshot(device: torch.device) -> MemorySnapshot:
    torch.cuda.synchronize(device)
    free, total = torch.cuda.mem_get_info(device)
    return MemorySnapshot(torch.cuda.memory_allocated(device),
                          torch.cuda.max_memory_allocated(device),
                          torch.cuda.memory_reserved(device), free, total)


@dataclass(frozen=True, slots=True)
class MemoryProfile:
    total: int
    utilization: float
    weights: int
    activation: int
    non_torch: int

    @property
    def kv_bytes(self) -> float:
        return kv_blocks.gpu_available_bytes(self.total, self.utilization, self.weights,
                                             self.activation, self.non_torch)

    def summary(self) -> str:
        return (f"weights {self.weights / GiB:.2f} GiB, activation peak "
                f"{self.activation / GiB:.2f} GiB, non-torch {self.non_torch / GiB:.2f} GiB, "
                f"KV cache {self.kv_bytes / GiB:.2f} GiB")


def profile(start: MemorySnapshot, loaded: MemorySnapshot, before_forward: MemorySnapshot,
            after_forward: MemorySnapshot, utilization: float) -> MemoryProfile:
    """`start`: before the weights were loaded; `loaded`: after; `before_forward` and
    `after_forward` bracket the dummy forward (its peak reset just before it)."""
    wanted = utilization * start.total
    if start.free < wanted:
        raise ResourceError(
            f"the GPU has {start.free / GiB:.1f} GiB free of {start.total / GiB:.1f} GiB but "
            f"gpu_memory_utilization={utilization} asks for {wanted / GiB:.1f} GiB; lower "
            f"--gpu-memory-utilization or stop what else uses the GPU")
    return MemoryProfile(
        total=start.total, utilization=utilization,
        weights=max(0, loaded.allocated - start.allocated),
        activation=max(0, after_forward.peak - before_forward.allocated),
        non_torch=max(0, after_forward.non_torch - start.non_torch))
