"""The DP client over fake replicas: routing, health per replica, and migration when a replica
dies mid-stream (no token lost or repeated, no error)."""

import asyncio

import pytest

from engine import SamplingParams
from engine.loop.dp_client import DataParallelClient
from engine.loop.engine_client import EngineHealth
from engine.loop.migration import Resume
from engine.outputs import CompletionOutput, RequestOutput
from onenode.errors import EngineDeadError

TOKENS = list(range(100, 130))  # what every replica generates (greedy, same weights)


class FakeTokenizer:
    def encode(self, text):
        return [int(w) for w in text.split()]


class FakeReplica:
    """Streams TOKENS cumulatively; `die_after` tokens into a stream it dies (the stream ends in
    EngineDeadError, alive turns False), as AsyncEngine does when a rank is killed."""

    tokenizer, max_model_len, vocab_size = FakeTokenizer(), 256, 512

    def __init__(self, die_after=None):
        self.die_after, self.dead, self.seen, self.aborted = die_after, False, [], []
        self.stats, self.num_waiting = {"num_running": 0, "num_waiting": 0}, 0

    def default_sampling_params(self):
        return {}

    @property
    def alive(self):
        return not self.dead

    def health(self):
        return EngineHealth(not self.dead, "recovering" if self.dead else "serving",
                            ("serving", "recovering"), "rebuilding" if self.dead else None,
                            10 if self.dead else None, 0)

    async def generate(self, request_id, prompt, params, prompt_text=None):
        if self.dead:
            raise EngineDeadError("dead")
        self.seen.append((request_id, prompt))
        prompt_ids = prompt.prompt_token_ids if isinstance(prompt, Resume) else list(prompt)
        prior = list(prompt.completions[0].token_ids) if isinstance(prompt, Resume) else []
        start = len(prior)
        for n in range(start + 1, params.max_tokens + 1):
            await asyncio.sleep(0)
            if self.die_after is not None and n > self.die_after:
                self.dead = True
                raise EngineDeadError("mp worker rank 0 died")
            yield RequestOutput(request_id, None, prompt_ids,
                                [CompletionOutput(0, "", prior + TOKENS[start:n])],
                                n == params.max_tokens)

    def abort(self, request_id):
        self.aborted.append(request_id)

    def shutdown(self, timeout_s=30.0):
        pass


async def collect(client, request_id, prompt, max_tokens=20):
    """The deltas a streaming client would send, as the server computes them."""
    got, sent = [], 0
    async for out in client.generate(request_id, prompt, SamplingParams(max_tokens=max_tokens)):
        assert out.request_id == request_id
        ids = out.outputs[0].token_ids
        assert len(ids) >= sent, "a cumulative output went backwards"
        got += ids[sent:]
        sent = len(ids)
    return got


def test_a_replica_dying_mid_stream_moves_its_requests_without_loss_or_repeat():
    dying, healthy = FakeReplica(die_after=7), FakeReplica()
    client = DataParallelClient([dying, healthy], block_size=4)

    async def main():
        return await asyncio.gather(*(collect(client, f"r{i}", [i, i + 1]) for i in range(4)))

    results = asyncio.run(main())
    assert results == [TOKENS[:20]] * 4
    moved = [(rid, p) for rid, p in healthy.seen if isinstance(p, Resume)]
    assert moved and all(rid.endswith("#migrated1") for rid, _ in moved)
    assert all(len(p.completions[0].token_ids) == 7 for _, p in moved)
    assert client.migrations_total == len(moved)
    assert [r.state for r in client.health().replicas] == ["recovering", "serving"]
    assert client.health().alive and client.router.load == [0, 0]


def test_max_migrations_bounds_the_retries():
    client = DataParallelClient([FakeReplica(die_after=3), FakeReplica(die_after=5)],
                                block_size=4, max_migrations=1)

    async def main():
        return await collect(client, "r", [1, 2])

    with pytest.raises(EngineDeadError):
        asyncio.run(main())
    none = DataParallelClient([FakeReplica(die_after=3), FakeReplica()], block_size=4,
                              max_migrations=0)
    with pytest.raises(EngineDeadError):
        asyncio.run(collect(none, "r", [1, 2]))


def test_a_bookkeeping_bug_is_seen(monkeypatch):
    """Restart a moved request from its prompt instead of resuming it and the client would get
    its first tokens twice: the check sees it."""
    from engine.loop import migration

    real = migration.MigrationRecord.migrate

    def restart(self, prompt):
        real(self, prompt)
        return prompt

    monkeypatch.setattr(migration.MigrationRecord, "migrate", restart)
    client = DataParallelClient([FakeReplica(die_after=7), FakeReplica()], block_size=4)
    with pytest.raises(AssertionError, match="went backwards"):
        asyncio.run(collect(client, "r", [1, 2]))


def test_routing_skips_a_dead_replica_and_health_lists_each():
    a, b, c = FakeReplica(), FakeReplica(), FakeReplica()
    b.dead = True
    client = DataParallelClient([a, b, c], block_size=4)
    asyncio.run(collect(client, "x", [1, 2, 3, 4, 5], max_tokens=2))
    asyncio.run(collect(client, "y", [9, 9, 9, 9, 9], max_tokens=2))
    assert not b.seen and len(a.seen) + len(c.seen) == 2
    health = client.health()
    assert health.alive and [r.state for r in health.replicas] == \
        ["serving", "recovering", "serving"]
    a.dead = c.dead = True
    assert not client.health().alive and client.health().retry_after_s == 10
    assert [r["state"] for r in client.stats["replicas"]] == ["recovering"] * 3
