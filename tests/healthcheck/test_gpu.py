"""The GPU path on one machine, without Ray: NVML inventory and an NCCL all-reduce across its
GPUs with NCCL_DEBUG=INFO parsed (what the probes do on every GPU node)."""

import multiprocessing as mp
import os

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
MiB = 1 << 20


def test_nvml_inventory_matches_torch():
    from healthcheck.inventory import nvml_gpus

    errors = []
    gpus, driver = nvml_gpus(errors)
    assert not errors and len(gpus) == torch.cuda.device_count()
    assert all(g["memory_bytes"] > 1 << 30 and g["name"] for g in gpus)
    assert driver["driver"] and driver["cuda"].count(".") == 1


def _rank(rank, world, port, log_dir, queue):
    os.environ.update(NCCL_DEBUG="INFO", NCCL_DEBUG_SUBSYS="INIT,NET,P2P,SHM",
                      NCCL_DEBUG_FILE=f"{log_dir}/nccl.{rank}.%p.log")
    from healthcheck.collectives import run_rank

    queue.put(run_rank("nccl", rank, world, "127.0.0.1", port, [MiB, 64 * MiB], 16 * MiB, 60,
                       f"cuda:{rank}"))


def test_nccl_allreduce_across_this_machines_gpus(tmp_path):
    from healthcheck.nccl_log import link_transports, parse_nccl_log
    from onenode.net import free_port

    world = torch.cuda.device_count()
    ctx = mp.get_context("spawn")
    queue, port = ctx.Queue(), free_port()
    procs = [ctx.Process(target=_rank, args=(r, world, port, str(tmp_path), queue))
             for r in range(world)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=300) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    for res in results:
        assert all(r["correct"] and r["busbw_gbps"] > 0 for r in res["allreduce"])
    lines = [ln for f in tmp_path.glob("nccl.*.log") for ln in f.read_text().splitlines()]
    assert any("NCCL INFO" in ln for ln in lines)
    log = parse_nccl_log(lines)
    if world > 1:
        links = link_transports(log)
        assert links and not any(t.inter_node for t in links)
        assert {t.transport for t in links} <= {"p2p", "shm", "nvls"}
