"""Worker: the object behind collective_rpc. Every executor (uni, mp, ray) creates one per rank
and calls its methods by name; nothing else crosses the seam.

The worker moves a step's hidden states between pipeline stages (receive from the previous stage,
send to the next); its ModelRunner only runs this rank's stage."""

import os
import socket

import torch

from engine.config import EngineConfig
from engine.layers.fused_moe import expert_load, reset_expert_load
from engine.parallel import parallel_state as ps
from engine.parallel.distributed_init import (
    destroy_distributed,
    init_distributed,
    pick_device,
)
from engine.worker.model_runner import ModelRunner
from onenode.errors import ConfigError
from engine.worker.seq_states import SeqStates


class Worker:
    def __init__(self, config: EngineConfig, rank: int, partition: list[int],
                 master_addr: str = "127.0.0.1", master_port: int = 0, local_rank: int = 0,
                 num_threads: int | None = None):
        self.config = config
        self.rank = rank
        self.partition = partition
        self.master = (master_addr, master_port)
        self.local_rank = local_rank
        self.num_threads = num_threads
        self.runner: ModelRunner | None = None
        self.seq_states = SeqStates()  # steps carry deltas; this rank keeps the whole state

    def init_device(self) -> None:
        device = pick_device(self.config.device)
        if device == "cuda":
            if self.local_rank >= torch.cuda.device_count():
                cfg = self.config
                raise ConfigError(
                    f"data_parallel_size x tensor_parallel_size x pipeline_parallel_size = "
                    f"{cfg.num_devices} needs that many GPUs on this node, it has "
                    f"{torch.cuda.device_count()}; use --data-parallel-backend ray to spread "
                    f"replicas over nodes, or fewer replicas")
            torch.cuda.set_device(self.local_rank)
        if self.num_threads:
            # Ranks share the host's cores: oversubscribed OpenMP threads slow every rank down.
            torch.set_num_threads(self.num_threads)
        torch.manual_seed(self.config.seed)
        cfg = self.config
        init_distributed(self.rank, cfg.world_size, *self.master, cfg.tensor_parallel_size,
                         cfg.pipeline_parallel_size, device,
                         expert_parallel=cfg.enable_expert_parallel)
        self.runner = ModelRunner(cfg, self.partition, device)

    def load_model(self, source=None) -> None:
        self.runner.load_model(source)

    def determine_num_blocks(self, max_num_batched_tokens: int) -> tuple[int, int, float]:
        """(blocks that fit, bytes per block, available bytes) for this rank."""
        available = self.runner.available_kv_bytes(max_num_batched_tokens)
        block_bytes = self.runner.block_bytes()
        from engine.core.kv_blocks import num_kv_blocks

        return num_kv_blocks(available, block_bytes), block_bytes, available

    def init_cache(self, num_blocks: int) -> None:
        self.runner.init_cache(num_blocks)
        reset_expert_load(self.runner.model)  # warm-up tokens are not load

    def expert_load(self) -> tuple[int, int]:
        """(this rank's place in its stage's EP/TP group, (token, expert) pairs its experts
        computed since start-up)."""
        return ps.tp().rank, expert_load(self.runner.model)

    def execute_model(self, out):
        out = self.seq_states.apply(out)
        pp = ps.pp()
        intermediate = None
        if pp.rank > 0:
            intermediate = ps.pp_recv(self.runner.intermediate_spec(out.num_tokens), pp.rank - 1,
                                      self.runner.device)
        result = self.runner.execute(out, intermediate)
        if pp.rank < pp.size - 1:
            ps.pp_send(result, pp.rank + 1)
            return None
        return result

    def ping(self) -> bool:
        """The idle health check: a round trip proves the rank's process is not stuck."""
        return True

    def node_info(self) -> dict:
        from onenode.net import node_ip

        return {"rank": self.rank, "hostname": socket.gethostname(), "pid": os.getpid(),
                "ip": node_ip(), "vllm_host_ip": os.environ.get("VLLM_HOST_IP"),
                "tp_rank": ps.tp().rank, "pp_rank": ps.pp().rank,
                "device": str(self.runner.device) if self.runner else None,
                "threads": torch.get_num_threads()}

    def shutdown(self) -> None:
        destroy_distributed()
