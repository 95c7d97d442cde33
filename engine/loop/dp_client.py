"""DataParallelClient: N replicas (one AsyncEngine each) behind the one EngineClient face.

Each request goes to the replica the router picks (router.py). When that replica dies mid-stream
(its AsyncEngine fails the stream with EngineDeadError), the request's record (migration.py) is
resumed on a live replica and the client's stream goes on: no error, no token repeated or lost,
up to `max_migrations` times per request. A replica is in rotation while its AsyncEngine is alive
(a dead rank is seen at once during a step, within its health interval when idle); its own
recovery rebuilds it in the background, and it rejoins the rotation when it serves again.
"""

import contextlib
import logging
from collections.abc import AsyncIterator

from engine.loop.engine_client import EngineHealth, ReplicaHealth
from engine.loop.migration import MigrationRecord
from engine.loop.router import Router
from onenode.errors import EngineDeadError

log = logging.getLogger("onenode.dp")

_SUMMED = ("num_running", "num_waiting", "num_preemptions", "prompt_tokens_total",
           "generation_tokens_total", "prefix_cache_queries", "prefix_cache_hits", "num_blocks")
def replica_state(health: EngineHealth) -> str:
    if health.alive:
        return "serving"
    return "recovering" if health.retry_after_s is not None else "down"


class DataParallelClient:
    def __init__(self, replicas: list, block_size: int, max_migrations: int = 1):
        self.replicas = replicas
        self.router = Router(len(replicas), block_size)
        self.max_migrations = max_migrations
        self.migrations_total = 0
        self._where: dict[str, tuple[int, str]] = {}  # request id -> (replica, engine id)
        first = replicas[0]
        self._tokenizer, self._max_model_len = first.tokenizer, first.max_model_len
        self._vocab_size, self._defaults = first.vocab_size, first.default_sampling_params()

    # ---- model facts -----------------------------------------------------------------------
    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def max_model_len(self) -> int:
        return self._max_model_len

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def default_sampling_params(self) -> dict:
        return dict(self._defaults)

    def compile_grammar(self, structured_outputs) -> None:
        self.replicas[self._any_live()].compile_grammar(structured_outputs)

    # ---- requests --------------------------------------------------------------------------
    async def generate(self, request_id: str, prompt, params,
                       prompt_text: str | None = None) -> AsyncIterator:
        record = MigrationRecord(request_id, self.max_migrations)
        token_ids = self._tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        submit = prompt
        try:
            while True:
                replica = self._pick(token_ids + record_tokens(record))
                self.router.assign(request_id, replica, token_ids + record_tokens(record))
                self._where[request_id] = (replica, record.engine_request_id)
                stream = self.replicas[replica].generate(record.engine_request_id, submit,
                                                         params, prompt_text=prompt_text)
                try:
                    async with contextlib.aclosing(stream):
                        async for out in stream:
                            out = record.observe(out)
                            self.router.progress(request_id, record.num_tokens)
                            yield out
                    return
                except EngineDeadError as exc:
                    self.router.set_in_rotation(replica, False)
                    if not record.may_migrate() or not self._others_live(replica):
                        raise
                    submit = record.migrate(prompt)
                    self.migrations_total += 1
                    log.warning("replica %d failed (%s); request %s resumes on a live replica "
                                "after %d token(s) (migration %d of at most %d)", replica,
                                str(exc)[:200], request_id, record.num_tokens - len(token_ids),
                                record.migrations, self.max_migrations)
        finally:
            self._where.pop(request_id, None)
            self.router.release(request_id)

    def abort(self, request_id: str) -> None:
        where = self._where.get(request_id)
        if where is not None:
            self.replicas[where[0]].abort(where[1])

    def _refresh(self) -> None:
        for r, engine in enumerate(self.replicas):
            self.router.set_in_rotation(r, engine.alive)

    def _pick(self, token_ids: list[int]) -> int:
        self._refresh()
        return self.router.pick(token_ids)

    def _others_live(self, dead: int) -> bool:
        self._refresh()
        return any(self.router.in_rotation[r] for r in range(len(self.replicas)) if r != dead)

    def _any_live(self) -> int:
        # Called off the event loop (grammar compiles): reads the replicas, not the router.
        live = [r for r, engine in enumerate(self.replicas) if engine.alive]
        if not live:
            raise EngineDeadError(self.health().message or "no replica is serving")
        return live[0]

    # ---- health and statistics -------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return any(engine.alive for engine in self.replicas)

    def health(self) -> EngineHealth:
        each = [engine.health() for engine in self.replicas]
        replicas = tuple(ReplicaHealth(r, replica_state(h), h.restarts, h.message)
                         for r, h in enumerate(each))
        serving = [h for h in each if h.alive]
        rebuilding = [h for h in each if not h.alive and h.retry_after_s is not None]
        base = serving[0] if serving else (rebuilding or each)[0]
        message = None if serving else (
            f"no data-parallel replica is serving: {'; '.join(h.message or '?' for h in each)}")
        return EngineHealth(alive=bool(serving), state=base.state, states=base.states,
                            message=message, retry_after_s=None if serving else
                            base.retry_after_s, restarts=sum(h.restarts for h in each),
                            replicas=replicas)

    @property
    def stats(self) -> dict:
        per = [dict(engine.stats) for engine in self.replicas]
        states = [replica_state(engine.health()) for engine in self.replicas]
        for s, state in zip(per, states):
            if state != "serving":  # its last snapshot's requests have moved on
                s.update(num_running=0, num_waiting=0, kv_cache_usage=0.0)
        total = {k: sum(s.get(k, 0) for s in per) for k in _SUMMED}
        total["kv_cache_usage"] = sum(s.get("kv_cache_usage", 0.0) for s in per) / len(per)
        total["replicas"] = [{**s, "state": st} for s, st in zip(per, states)]
        total["migrations_total"] = self.migrations_total
        return total

    @property
    def num_waiting(self) -> int:
        return sum(engine.num_waiting for engine in self.replicas)

    def shutdown(self, timeout_s: float = 30.0) -> None:
        for engine in self.replicas:
            engine.shutdown(timeout_s)


def record_tokens(record: MigrationRecord) -> list[int]:
    """Tokens generated so far (first completion), for routing a resumed request."""
    if record.last is None or not record.last.outputs:
        return []
    return list(record.last.outputs[0].token_ids)
