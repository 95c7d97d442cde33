"""The KV budget counts what this engine added (weights loaded, activation peak, non-torch
growth), not what the process already held: pure arithmetic over snapshots, no GPU."""

import types

import pytest
import torch

from engine.worker import memory_profile
from engine.worker.memory_profile import MemorySnapshot, profile
from engine.worker.model_runner import ModelRunner
from onenode.errors import ResourceError

G = 1 << 30
TOTAL = 100 * G


def snap(allocated, peak=None, reserved=None, non_torch=1 * G):
    reserved = allocated if reserved is None else reserved
    return MemorySnapshot(allocated, allocated if peak is None else peak, reserved,
                          TOTAL - reserved - non_torch, TOTAL)


def test_memory_held_before_loading_is_not_counted_as_weights():
    # A caller holds 10 GiB (an HF model in a test); the engine loads 2 GiB of weights, its
    # forward peaks 3 GiB above that, and NCCL/cuBLAS add 0.5 GiB outside torch.
    start, loaded = snap(10 * G), snap(12 * G)
    after = snap(12 * G, peak=15 * G, reserved=15 * G, non_torch=int(1.5 * G))
    found = profile(start, loaded, snap(12 * G), after, 0.5)
    assert (found.weights, found.activation, found.non_torch) == (2 * G, 3 * G, G // 2)
    assert found.kv_bytes == 50 * G - 2 * G - 3 * G - G // 2
    assert "weights 2.00 GiB" in found.summary()


def test_the_budget_must_be_free_at_start():
    start = snap(60 * G)  # 39 GiB free
    with pytest.raises(ResourceError, match="asks for 50.0 GiB; lower --gpu-memory-util") as e:
        profile(start, start, start, start, 0.5)
    assert "\n" not in str(e.value)


def test_the_runner_profiles_between_its_own_snapshots(monkeypatch):
    """_profile_cuda uses the snapshots taken around load_model, not the process's total."""
    runner = ModelRunner.__new__(ModelRunner)
    runner.device = torch.device("cuda")
    runner.config = types.SimpleNamespace(gpu_memory_utilization=0.5)
    runner._memory = [snap(10 * G), snap(12 * G)]
    taken = iter([snap(12 * G), snap(12 * G, peak=15 * G, reserved=15 * G)])
    monkeypatch.setattr(memory_profile, "snapshot", lambda device: next(taken))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device: None)
    monkeypatch.setattr(runner, "_forward_dummy", lambda n: None, raising=False)
    assert runner._profile_cuda(256) == 50 * G - 2 * G - 3 * G
