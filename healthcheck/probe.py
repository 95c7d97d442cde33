"""The probe: a small Ray actor placed on one node (or one GPU) that reports what the node has
and takes one rank of the communication tests.

Probes take no real resources (a sliver of CPU, or the one GPU they test) so the healthcheck also
runs next to a serving engine. Their environment is the node's own (no runtime_env), which is the
point: the inventory shows what each node really has, not what the driver's shell exported.
"""

import os
from pathlib import Path

NCCL_LOG_DIR = "/tmp/onenode-healthcheck"
# Keep only what nccl_log.py reads: the rest of NCCL_DEBUG=INFO output is thousands of lines.
NCCL_KEEP = (" via ", "Using network", " nranks ", "NCCL WARN")


class Probe:
    def __init__(self, threads: int = 1):
        # torch is imported only by run(): the inventory must answer fast on a busy node.
        self.threads = threads

    def node(self) -> dict:
        import ray

        return {"ray_ip": ray.util.get_node_ip_address(),
                "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    def inventory(self, model_path: str | None, run_key: bytes):
        from healthcheck.inventory import collect

        me = self.node()
        return collect(me["ray_ip"], me["node_id"], model_path, run_key)

    def free_port(self) -> int:
        from onenode.net import free_port

        return free_port()

    def run(self, backend: str, rank: int, world: int, addr: str, port: int, sizes: list[int],
            p2p_size: int, timeout_s: float, pairs: list | None = None) -> dict:
        import torch

        from healthcheck.collectives import run_rank

        torch.set_num_threads(self.threads)  # probes share the node's cores with everything else
        device = "cpu"
        self._gloo_interface()
        if backend == "nccl":
            self._nccl_debug_env(rank)
            device = "cuda:0"  # Ray sets CUDA_VISIBLE_DEVICES to this actor's one GPU
        result = run_rank(backend, rank, world, addr, port, sizes, p2p_size, timeout_s, device,
                          pairs)
        if backend == "nccl":
            result["nccl_log"] = self._nccl_lines(rank)
        return result

    def _gloo_interface(self) -> None:
        """Gloo binds to the address the hostname resolves to, which on host networking is often
        127.0.1.1; the interface holding Ray's node IP is the one the other nodes can reach.
        A GLOO_SOCKET_IFNAME the user set wins (and is compared across nodes)."""
        from healthcheck.inventory import interfaces

        if not os.environ.get("GLOO_SOCKET_IFNAME"):
            ip = self.node()["ray_ip"]
            name = next((n for n, addr in interfaces().items() if addr == ip), None)
            if name:
                os.environ["GLOO_SOCKET_IFNAME"] = name

    @staticmethod
    def _nccl_debug_env(rank: int) -> None:
        """NCCL reads these when it first initialises, i.e. inside this run."""
        Path(NCCL_LOG_DIR).mkdir(parents=True, exist_ok=True)
        os.environ["NCCL_DEBUG"] = "INFO"
        os.environ["NCCL_DEBUG_SUBSYS"] = "INIT,NET,P2P,SHM"
        os.environ["NCCL_DEBUG_FILE"] = f"{NCCL_LOG_DIR}/nccl.{rank}.%h.%p.log"

    @staticmethod
    def _nccl_lines(rank: int) -> list[str]:
        lines = []
        for path in Path(NCCL_LOG_DIR).glob(f"nccl.{rank}.*.{os.getpid()}.log"):
            lines += [ln for ln in path.read_text(errors="replace").splitlines()
                      if any(k in ln for k in NCCL_KEEP)]
            path.unlink(missing_ok=True)
        return lines
