"""uni: the single worker runs in this process (world size 1)."""

from engine.executor.base import DoneFuture, Executor
from engine.worker.worker import Worker


class UniExecutor(Executor):
    name = "uni"

    def __init__(self, config, partition, source=None):
        super().__init__(config, partition)
        self.worker = Worker(config, rank=0, partition=partition,
                             local_rank=self.device_offset)
        self.start_workers(source)

    def collective_rpc_async(self, method, args=(), kwargs=None):
        return DoneFuture([getattr(self.worker, method)(*args, **(kwargs or {}))])

    def check_health(self) -> None:
        return None

    def shutdown(self) -> None:
        self.worker.shutdown()
