"""Per-step deltas: over random scheduling runs (preemption, aborts, pipelined steps), the state a
worker rebuilds from deltas equals the full state the scheduler would have sent, deltas stay
small, and state is dropped for finished, aborted and preempted sequences. A scheduler that
forgets a preemption is seen."""

import random

import pytest

from engine.core.scheduler import Scheduler
from engine.core.scheduler_output import ModelRunnerOutput, SampledToken
from engine.worker.seq_states import SeqStates
from onenode.errors import EngineDeadError
from tests.engine.core.fake_model import make_scheduler, make_seq


def full_views(sched, out):
    return {s.seq_id: (list(sched.seqs[s.seq_id].block_table),
                       list(sched.seqs[s.seq_id].output_token_ids), sched.seqs[s.seq_id].params,
                       list(sched.seqs[s.seq_id].prompt_token_ids)
                       if sched.seqs[s.seq_id].params.repetition_penalty != 1.0 else None)
            for s in out.seqs}


def random_run(seed: int, depth: int) -> dict:
    """Drives the scheduler like the engine loop; checks every step; returns counters."""
    rng = random.Random(seed)
    sched = make_scheduler(num_blocks=24, block_size=4, max_num_seqs=6, budget=24)
    states, in_flight, next_id = SeqStates(), [], 0
    stats = {"full": 0, "delta": 0, "delta_blocks": 0, "steps": 0}
    for _ in range(400):
        if next_id < 30 and rng.random() < 0.3:
            penalty = rng.choice([1.0, 1.2])
            sched.add(make_seq(next_id, [rng.randrange(50) for _ in range(rng.randrange(1, 20))],
                               arrival=next_id, max_tokens=rng.randrange(1, 25),
                               repetition_penalty=penalty))
            next_id += 1
        if sched.seqs and rng.random() < 0.03:
            sched.abort_request(f"req-{rng.choice(list(sched.seqs))}")
        while len(in_flight) < depth:
            out = sched.schedule(*sched.micro_batch_limits(depth))
            if out.is_empty:
                break
            expected = full_views(sched, out)
            stats["full"] += sum(s.full for s in out.seqs)
            stats["delta"] += sum(not s.full for s in out.seqs)
            stats["delta_blocks"] += sum(len(s.block_table) for s in out.seqs if not s.full)
            states.apply(out)
            assert {s.seq_id: (s.block_table, s.output_token_ids, s.params, s.prompt_token_ids)
                    for s in out.seqs} == expected
            assert all(s.full for s in out.seqs)
            live = set(sched.seqs) | set(sched._finished_ids)
            assert set(states._states) <= live
            in_flight.append(out)
            stats["steps"] += 1
        if in_flight:
            out = in_flight.pop(0)
            sampled = {s.seq_id: SampledToken(rng.randrange(50)) for s in out.seqs if s.sample}
            sched.update_from_output(out, ModelRunnerOutput(sampled))
    stats["preemptions"] = sched.num_preemptions
    return stats


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("seed", range(6))
def test_delta_state_equals_full_state(seed, depth):
    stats = random_run(seed, depth)
    assert stats["steps"] > 50 and stats["delta"] > stats["full"]
    assert stats["delta_blocks"] < stats["delta"]  # most steps add no block


def test_random_runs_preempt():
    assert sum(random_run(seed, 1)["preemptions"] for seed in range(6)) > 0


def test_a_scheduler_that_forgets_a_preemption_is_seen(monkeypatch):
    original = Scheduler._preempt

    def forgetful(self, seq):
        sent = self._sent.get(seq.seq_id)
        original(self, seq)
        self._preempted_ids = [i for i in self._preempted_ids if i != seq.seq_id]
        if sent is not None:
            self._sent[seq.seq_id] = sent

    monkeypatch.setattr(Scheduler, "_preempt", forgetful)
    with pytest.raises(AssertionError):
        for seed in range(6):
            random_run(seed, 1)


def test_a_delta_without_state_is_refused_in_one_line():
    sched = make_scheduler()
    sched.add(make_seq(0, [1, 2, 3], max_tokens=5))
    first = sched.schedule()
    sched.update_from_output(first, ModelRunnerOutput({0: SampledToken(7)}))
    with pytest.raises(EngineDeadError, match="without its state"):
        SeqStates().apply(sched.schedule())
