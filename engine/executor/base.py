"""The executor seam: `collective_rpc(method, args, kwargs)` calls a Worker method on every rank.

The engine loop never knows whether workers are in-process (uni), subprocesses (mp) or Ray actors
(ray). As in vLLM v1, the executor owns the pipeline: `max_concurrent_batches` (how many steps the
engine may keep in flight, one per stage) and the output rank (the last stage's first TP rank,
which samples). `execute_model_async` answers with that rank's result alone.
"""

from abc import ABC, abstractmethod
from typing import Any

from engine.config import EngineConfig


class RpcFuture(ABC):
    @abstractmethod
    def result(self) -> list[Any]:
        """One result per rank, in rank order; raises the worker's error or EngineDeadError."""


class DoneFuture(RpcFuture):
    def __init__(self, results: list[Any]):
        self._results = results

    def result(self) -> list[Any]:
        return self._results


class _OutputRankFuture(RpcFuture):
    def __init__(self, inner: RpcFuture, rank: int):
        self._inner, self._rank = inner, rank

    def result(self):
        return self._inner.result()[self._rank]


class Executor(ABC):
    name = "base"

    def __init__(self, config: EngineConfig, partition: list[int]):
        self.config = config
        self.partition = partition
        self.world_size = config.world_size
        # One step per pipeline stage in flight keeps every stage busy (vLLM's virtual engines).
        self.max_concurrent_batches = config.pipeline_parallel_size
        # The last stage's first TP rank samples and returns the step's tokens.
        self.output_rank = (config.pipeline_parallel_size - 1) * config.tensor_parallel_size
        # Data-parallel replicas on one node (mp) each take their own devices: replica r's
        # ranks use devices r x world_size and up.
        self.device_offset = (config.data_parallel_rank * config.world_size
                              if config.data_parallel_backend == "mp" else 0)

    @abstractmethod
    def collective_rpc_async(self, method: str, args: tuple = (),
                             kwargs: dict | None = None) -> RpcFuture: ...

    def collective_rpc(self, method: str, args: tuple = (), kwargs: dict | None = None) -> list:
        return self.collective_rpc_async(method, args, kwargs).result()

    def execute_model_async(self, scheduler_output) -> RpcFuture:
        """One step on every rank; the future's result is the output rank's ModelRunnerOutput."""
        future = self.collective_rpc_async("execute_model", (scheduler_output,))
        return _OutputRankFuture(future, self.output_rank)

    def start_workers(self, source=None) -> None:
        """Bring every rank up to a loaded model (distributed init included)."""
        self.collective_rpc("init_device")
        self.collective_rpc("load_model", (source,))

    @abstractmethod
    def check_health(self) -> None:
        """Raise EngineDeadError when any worker is gone."""

    def interrupt(self, reason: str) -> bool:
        """Called from another thread when a call into the workers is stuck: end it by killing
        the workers (the waiting call then raises EngineDeadError and recovery rebuilds). False
        when the stuck call runs in this very process and nothing can end it (uni)."""
        return False

    @abstractmethod
    def shutdown(self) -> None: ...
