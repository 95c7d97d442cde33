"""A replica whose devices this node does not have is refused in one line naming the fix."""

import pytest
import torch

from engine.config import EngineConfig
from engine.worker import worker as worker_mod
from onenode.errors import ConfigError


def test_too_few_gpus_for_the_replicas_names_the_fix(monkeypatch):
    monkeypatch.setattr(worker_mod, "pick_device", lambda requested: "cuda")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    cfg = EngineConfig(model="m", data_parallel_size=2, data_parallel_rank=1)
    w = worker_mod.Worker(cfg, rank=0, partition=[1], local_rank=1)
    with pytest.raises(ConfigError, match="= 2 needs that many GPUs.*--data-parallel-backend ray"):
        w.init_device()
