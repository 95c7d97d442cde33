"""mp: one worker process per rank on this node, driven over pipes.

Waiting on a reply also watches the worker's process sentinel, so a killed worker becomes an
EngineDeadError at once instead of a hang; workers exit on EOF when the driver goes away.
"""

import multiprocessing as mp
import os
import sys
import threading
from multiprocessing.connection import wait

from engine.executor.base import Executor, RpcFuture
from onenode.errors import EngineDeadError
from onenode.net import free_port, node_ip

# Rendezvous ports handed out in this process. Data-parallel replicas start their worlds at the
# same time; free_port alone could give two of them the same port before either binds it.
_PORTS_TAKEN: set[int] = set()
_PORTS_LOCK = threading.Lock()


def reserve_port(host: str) -> int:
    with _PORTS_LOCK:
        while True:
            port = free_port(host)
            if port not in _PORTS_TAKEN:
                _PORTS_TAKEN.add(port)
                return port


class _MpFuture(RpcFuture):
    def __init__(self, executor: "MpExecutor"):
        self.executor = executor
        self._results = None

    def result(self):
        if self._results is None:
            self._results = [self.executor.recv(rank) for rank in range(self.executor.world_size)]
        errors = [r for r in self._results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        return self._results


class MpExecutor(Executor):
    name = "mp"

    def __init__(self, config, partition, source=None):
        super().__init__(config, partition)
        ctx = mp.get_context("spawn")
        host = os.environ.get("VLLM_HOST_IP") and node_ip() or "127.0.0.1"
        port = self.master_port = reserve_port(host)
        # Every replica's ranks share this node's cores.
        ranks_here = self.world_size * (config.data_parallel_size
                                        if config.data_parallel_backend == "mp" else 1)
        threads = max(1, (os.cpu_count() or 1) // ranks_here)
        self.conns, self.procs = [], []
        self.dead: str | None = None
        for rank in range(self.world_size):
            parent, child = ctx.Pipe()
            kwargs = dict(config=config, rank=rank, partition=partition, master_addr=host,
                          master_port=port, local_rank=self.device_offset + rank,
                          num_threads=threads)
            proc = ctx.Process(target=_entry, args=(child, kwargs), daemon=True,
                               name=f"onenode-worker-{rank}")
            _start_without_main(proc)
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
        try:
            self.start_workers(source)
        except BaseException:
            self.shutdown()
            raise

    def collective_rpc_async(self, method, args=(), kwargs=None):
        self.check_health()
        for conn in self.conns:
            try:
                conn.send((method, args, kwargs or {}))
            except (BrokenPipeError, OSError):
                self.check_health()
                raise EngineDeadError("an mp worker went away; restart the engine") from None
        return _MpFuture(self)

    def recv(self, rank: int):
        conn, proc = self.conns[rank], self.procs[rank]
        while True:
            ready = wait([conn, proc.sentinel], timeout=1.0)
            if conn in ready:
                try:
                    status, value = conn.recv()
                except (EOFError, OSError):
                    self._mark_dead(rank)
                return value
            if proc.sentinel in ready or not proc.is_alive():
                self._mark_dead(rank)

    def _mark_dead(self, rank: int):
        proc = self.procs[rank]
        proc.join(timeout=1)
        self.dead = self.dead or (f"mp worker rank {rank} (pid {proc.pid}) died with exit code "
                     f"{proc.exitcode}; the engine cannot continue — restart it (check memory "
                     f"limits / dmesg for the OOM killer)")
        raise EngineDeadError(self.dead)

    def check_health(self) -> None:
        if self.dead:
            raise EngineDeadError(self.dead)
        for rank, proc in enumerate(self.procs):
            if not proc.is_alive():
                self._mark_dead(rank)

    def interrupt(self, reason: str) -> bool:
        """SIGKILL ends even a SIGSTOPped worker; the waiting `recv` sees its sentinel."""
        self.dead = reason
        for proc in list(self.procs):
            if proc.is_alive():
                proc.kill()
        return True

    def shutdown(self) -> None:
        for conn in self.conns:
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        for conn in self.conns:
            conn.close()
        self.conns, self.procs = [], []


def _start_without_main(proc) -> None:
    """Spawned children normally re-run the user's __main__ script, which re-creates the LLM
    in every worker when the script has no `if __name__ == "__main__":` guard (vLLM examples
    don't). Workers need nothing from __main__, so hide it while the child is prepared."""
    main = sys.modules.get("__main__")
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if hasattr(main, k)}
    if "__file__" in saved:
        del main.__file__
    main.__spec__ = None
    try:
        proc.start()
    finally:
        for k, v in saved.items():
            setattr(main, k, v)


def _entry(conn, kwargs):
    from engine.executor.mp_worker import worker_main

    worker_main(conn, kwargs)
