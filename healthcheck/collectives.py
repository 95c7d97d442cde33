"""The communication tests one rank runs: all-reduce (correctness, algbw, busbw) and pairwise
point-to-point bandwidth, over gloo (CPU tensors) or NCCL (GPU tensors).

Nothing here knows about Ray: a probe actor, a torch.multiprocessing child or a test calls the
same functions, so the GPU path can be checked on a machine without Ray. Bandwidths follow
nccl-tests: algbw = bytes / time, busbw = algbw x 2(n-1)/n for all-reduce (the bytes each link
carries in a ring), so busbw is comparable with a link's speed whatever the node count.
"""

import time
from dataclasses import dataclass
from datetime import timedelta

TRAFFIC_PER_SIZE = 256 << 20  # bytes moved per timed size: enough to average, bounded on 2 cores
MAX_ITERS = 20


@dataclass(frozen=True, slots=True)
class AllReduceResult:
    size: int  # bytes per rank
    correct: bool
    time_s: float  # mean time of one all-reduce on this rank
    algbw_gbps: float  # GB/s (1e9), as nccl-tests prints
    busbw_gbps: float
    iters: int


@dataclass(frozen=True, slots=True)
class P2PResult:
    src: int
    dst: int
    size: int
    time_s: float  # one-way time (half the mean round trip)
    gbps: float


def busbw(algbw: float, world: int) -> float:
    return algbw * 2 * (world - 1) / world if world > 1 else algbw


def iters_for(size: int) -> int:
    return max(1, min(MAX_ITERS, TRAFFIC_PER_SIZE // max(size, 1)))


def init_group(backend: str, rank: int, world: int, addr: str, port: int, timeout_s: float,
               device: str = "cpu"):
    """Join a fresh process group; every later collective fails after timeout_s instead of
    hanging (the seed's 30-minute hangs)."""
    import torch
    import torch.distributed as dist

    if device.startswith("cuda"):
        torch.cuda.set_device(device)  # NCCL barriers and p2p use the current device
    dist.init_process_group(backend, init_method=f"tcp://{addr}:{port}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=timeout_s))


def destroy_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def allreduce(sizes: list[int], device: str = "cpu") -> list[AllReduceResult]:
    """Sum-all-reduce of float32 tensors of each size: first checked (every rank holds rank+1,
    so every element must equal n(n+1)/2), then timed."""
    import torch
    import torch.distributed as dist

    world, rank = dist.get_world_size(), dist.get_rank()
    expected = world * (world + 1) / 2
    results = []
    for size in sizes:
        buf = torch.full((size // 4,), float(rank + 1), dtype=torch.float32, device=device)
        dist.all_reduce(buf)
        _sync(device)
        correct = bool(torch.all(buf == expected).item())
        iters = iters_for(size)
        dist.barrier()
        start = time.perf_counter()
        for _ in range(iters):
            dist.all_reduce(buf)
        _sync(device)
        elapsed = (time.perf_counter() - start) / iters
        algbw = size / elapsed / 1e9
        results.append(AllReduceResult(size, correct, elapsed, algbw, busbw(algbw, world), iters))
        del buf
    return results


def p2p(size: int, device: str = "cpu", iters: int = 3,
        pairs: list[tuple[int, int]] | None = None) -> list[P2PResult]:
    """Ping-pong between every pair of ranks, one pair at a time so each link is measured alone.
    Every rank runs the loop; only the two ranks of a pair move data, then all meet at a barrier.
    Returns the results this rank measured (as the lower rank of a pair)."""
    import torch
    import torch.distributed as dist

    world, rank = dist.get_world_size(), dist.get_rank()
    pairs = pairs or [(a, b) for a in range(world) for b in range(a + 1, world)]
    buf = torch.ones(size // 4, dtype=torch.float32, device=device)
    results = []
    for a, b in pairs:
        if rank in (a, b):
            peer = b if rank == a else a
            _ping_pong(buf, rank == a, peer, 1, device)  # warm up the connection
            start = time.perf_counter()
            _ping_pong(buf, rank == a, peer, iters, device)
            one_way = (time.perf_counter() - start) / iters / 2
            if rank == a:
                results.append(P2PResult(a, b, size, one_way, size / one_way / 1e9))
        dist.barrier()
    return results


def _ping_pong(buf, first: bool, peer: int, iters: int, device: str) -> None:
    import torch.distributed as dist

    for _ in range(iters):
        if first:
            dist.send(buf, peer)
            dist.recv(buf, peer)
        else:
            dist.recv(buf, peer)
            dist.send(buf, peer)
    _sync(device)


def run_rank(backend: str, rank: int, world: int, addr: str, port: int, sizes: list[int],
             p2p_size: int, timeout_s: float, device: str = "cpu",
             pairs: list[tuple[int, int]] | None = None) -> dict:
    """Everything one rank does, in one call: join, all-reduce, p2p, leave. Returns plain data
    (dicts of the dataclasses) so any transport can carry it back."""
    from dataclasses import asdict

    init_group(backend, rank, world, addr, port, timeout_s, device)
    try:
        reduce = allreduce(sizes, device)
        links = p2p(p2p_size, device, pairs=pairs) if world > 1 and p2p_size else []
    finally:
        destroy_group()
    return {"rank": rank, "allreduce": [asdict(r) for r in reduce],
            "p2p": [asdict(r) for r in links]}
