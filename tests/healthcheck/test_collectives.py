"""Real gloo collectives between processes on this machine (the same functions the probes run
across nodes)."""

import multiprocessing as mp

import pytest

from healthcheck.collectives import busbw, iters_for, run_rank
from onenode.net import free_port

MiB = 1 << 20


def _rank(rank, world, port, queue):
    import torch

    torch.set_num_threads(1)
    queue.put(run_rank("gloo", rank, world, "127.0.0.1", port, [MiB, 4 * MiB], 2 * MiB, 30))


def run_world(world):
    ctx = mp.get_context("spawn")
    queue, port = ctx.Queue(), free_port()
    procs = [ctx.Process(target=_rank, args=(r, world, port, queue)) for r in range(world)]
    for p in procs:
        p.start()
    results = sorted((queue.get(timeout=120) for _ in procs), key=lambda r: r["rank"])
    for p in procs:
        p.join(timeout=30)
    return results


def test_gloo_allreduce_is_correct_and_timed_and_p2p_covers_every_pair():
    results = run_world(3)
    for res in results:
        assert [r["size"] for r in res["allreduce"]] == [MiB, 4 * MiB]
        assert all(r["correct"] and r["time_s"] > 0 for r in res["allreduce"])
        r = res["allreduce"][0]
        assert r["busbw_gbps"] == pytest.approx(r["algbw_gbps"] * 4 / 3)
    pairs = sorted((p["src"], p["dst"]) for res in results for p in res["p2p"])
    assert pairs == [(0, 1), (0, 2), (1, 2)]
    assert all(p["gbps"] > 0 for res in results for p in res["p2p"])


def test_bandwidth_arithmetic():
    assert busbw(10.0, 1) == 10.0 and busbw(10.0, 2) == 10.0 and busbw(10.0, 8) == 17.5
    assert iters_for(1 << 20) == 20 and iters_for(128 << 20) == 2 and iters_for(1 << 30) == 1
