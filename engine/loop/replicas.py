"""Data-parallel replicas: each one's EngineConfig, and starting all of them.

A replica is a whole engine (scheduler, KV cache, its own workers in their own torch.distributed
world with its own rendezvous port) running TP x PP; replicas share nothing but the tokenizer's
files. On the mp backend each replica's ranks are worker processes on this node (a world of one
rank too, so replicas compute in parallel); on ray each replica gets its own placement group.
"""

import dataclasses
from concurrent.futures import ThreadPoolExecutor

from engine.config import EngineConfig


def replica_config(config: EngineConfig, rank: int) -> EngineConfig:
    if config.data_parallel_backend == "ray":
        backend = "ray"
    else:
        backend = config.distributed_executor_backend or "mp"
    return dataclasses.replace(config, data_parallel_rank=rank,
                               distributed_executor_backend=backend)


def start_replicas(config: EngineConfig, build) -> list:
    """`build(replica_config)` for every replica. The first starts alone: it performs the lazy
    imports (transformers' are not thread-safe) and reports a bad config once; the others then
    start at once on mp (loading weights dominates), one by one on ray (one ray.init, and each
    placement sees the devices the previous replicas reserved). If one fails, the others are
    shut down and the error is raised."""
    configs = [replica_config(config, r) for r in range(config.data_parallel_size)]
    built = [build(configs[0])]
    parallel = 1 if config.data_parallel_backend == "ray" else len(configs)
    with ThreadPoolExecutor(parallel, thread_name_prefix="onenode-dp-start") as pool:
        futures = [pool.submit(build, c) for c in configs[1:]]
    error = None
    for f in futures:
        try:
            built.append(f.result())
        except BaseException as exc:  # noqa: BLE001 - re-raised below after cleanup
            error = error or exc
    if error is not None:
        for engine in built:
            engine.shutdown()
        raise error
    return built


def expert_parallel_size(config: EngineConfig) -> int:
    """The seam for expert parallelism (the MoE issue): experts will spread over the DP x TP
    ranks where both land (vLLM's ep_size = dp x tp), so one ep() group of
    engine/parallel/parallel_state.py then spans the replicas' TP ranks and the replicas stop
    being independent worlds. Today each replica holds every expert and replicas share no
    process group, so this count is only reported."""
    return config.data_parallel_size * config.tensor_parallel_size
