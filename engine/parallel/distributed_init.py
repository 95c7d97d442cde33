"""torch.distributed start-up for one worker: gloo on CPU, NCCL on CUDA, with errors that name
what to check instead of a 30-minute hang."""

import datetime
import os

import torch
import torch.distributed as dist

from engine.parallel import parallel_state
from onenode.errors import ClusterError

IFNAME_VARS = ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")


def init_distributed(rank: int, world_size: int, master_addr: str, master_port: int,
                     tp: int, pp: int, device: str, timeout_s: float = 120.0,
                     expert_parallel: bool = False) -> None:
    """Join the world and create TP/PP(/EP) groups. world_size 1 stays non-distributed."""
    parallel_state.reset_groups()
    if world_size == 1:
        return
    backend = "nccl" if device == "cuda" else "gloo"
    url = f"tcp://{master_addr}:{master_port}"
    try:
        dist.init_process_group(backend, init_method=url, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout_s))
        parallel_state.init_groups(tp, pp, expert_parallel)
    except Exception as exc:  # noqa: BLE001 - turned into one actionable line
        ifnames = ", ".join(f"{k}={os.environ.get(k, '<unset>')}" for k in IFNAME_VARS)
        raise ClusterError(
            f"rank {rank}/{world_size} could not rendezvous at {url} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160]}); check that {master_addr} is this cluster's "
            f"driver IP reachable from every node (set VLLM_HOST_IP per node) and that {ifnames} "
            f"name an interface that exists on every node") from None


def destroy_distributed() -> None:
    parallel_state.reset_groups()
    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - best effort at shutdown
            pass


def pick_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested
