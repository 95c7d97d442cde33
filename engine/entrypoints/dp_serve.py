"""`onenode serve --data-parallel-size N`: start N replica engines, each an AsyncEngine with its
own recovery (a failed replica rebuilds itself in the background and rejoins), behind one
DataParallelClient that the server sees as its EngineClient."""

from engine.config import EngineConfig
from engine.loop.async_engine import AsyncEngine
from engine.loop.dp_client import DataParallelClient
from engine.loop.replicas import start_replicas
from engine.logger import init_logger

log = init_logger("onenode.api")


def start_data_parallel(config: EngineConfig, server, make_rebuilder, on_failed):
    """(client, one line for the start-up log). `make_rebuilder(replica_config, backend)` gives
    a replica's rebuilder; `on_failed` runs once every replica has failed for good."""
    from engine.loop.llm_engine import LLMEngine

    engines = start_replicas(config, LLMEngine)
    replicas: list[AsyncEngine] = []

    def replica_failed() -> None:
        if all(r.health().state == "failed" for r in replicas):
            on_failed()

    for engine in engines:
        replicas.append(AsyncEngine(engine, rebuilder=make_rebuilder(engine.config,
                                                                     engine.backend),
                                    recovery=server.recovery_config(),
                                    watchdog=server.watchdog_config(),
                                    on_failed=replica_failed))
    client = DataParallelClient(replicas, config.block_size, server.max_migrations)
    blocks = "+".join(str(e.num_blocks) for e in engines)
    return client, (f"{config.data_parallel_size} data-parallel replicas, {engines[0].backend} "
                    f"backend, {blocks} KV blocks, up to {server.max_migrations} migration(s) "
                    f"per request")
