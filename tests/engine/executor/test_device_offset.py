"""Data-parallel replicas on one node (mp) each take their own devices."""

import dataclasses

from engine.config import EngineConfig
from engine.executor.base import Executor
from engine.loop.replicas import replica_config


class _Bare(Executor):
    collective_rpc_async = check_health = shutdown = None


def test_replica_r_starts_at_device_r_times_world():
    cfg = EngineConfig(model="m", data_parallel_size=3, tensor_parallel_size=2)
    offsets = [_Bare(replica_config(cfg, r), [1]).device_offset for r in range(3)]
    assert offsets == [0, 2, 4]
    ray = dataclasses.replace(cfg, data_parallel_backend="ray")
    assert _Bare(replica_config(ray, 2), [1]).device_offset == 0  # its own node's devices
