"""A deterministic stand-in for the workers, for scheduler tests (pure logic, no torch).

It keeps a paged "KV cache" of token ids: each step writes the scheduled tokens at their slots
through the block table, and a sampled token is a hash of the history READ BACK from the cache.
So a wrong block table, a bad prefix-cache hit or a write into a shared block changes the output,
exactly as it would with a real model.
"""

from engine.core.block_manager import BlockManager
from engine.core.scheduler import Scheduler
from engine.core.scheduler_output import (
    ModelRunnerOutput,
    SampledToken,
    SchedulerOutput,
)
from engine.core.sequence import Sequence
from engine.sampling_params import SamplingParams
from engine.worker.seq_states import SeqStates

VOCAB = 50


def next_token(history: list[int]) -> int:
    h = 0
    for t in history:
        h = (h * 31 + t + 7) % 1_000_003
    return h % VOCAB


class FakeModel:
    def __init__(self, bm: BlockManager):
        self.bm = bm
        self.kv: list[list[int | None]] = [[None] * bm.block_size for _ in range(bm.num_blocks)]
        self.states = SeqStates()  # steps carry deltas, as to a real worker

    def execute(self, out: SchedulerOutput) -> ModelRunnerOutput:
        bs, sampled = self.bm.block_size, {}
        out = self.states.apply(out)
        for s in out.seqs:
            for j, tok in enumerate(s.token_ids):
                pos = s.start_pos + j
                block = s.block_table[pos // bs]
                assert self.bm.ref[block] == 1, "a step wrote into a shared (cached) block"
                self.kv[block][pos % bs] = tok
            if s.sample:
                end = s.start_pos + len(s.token_ids)
                history = [self.kv[s.block_table[p // bs]][p % bs] for p in range(end)]
                assert None not in history
                sampled[s.seq_id] = SampledToken(next_token(history))
        return ModelRunnerOutput(sampled)


def expected_output(prompt: list[int], n: int, stop_ids=()) -> list[int]:
    """What an unbatched, uncached run produces."""
    tokens, out = list(prompt), []
    while len(out) < n:
        out.append(next_token(tokens))
        tokens.append(out[-1])
        if out[-1] in stop_ids:
            break
    return out


def make_scheduler(num_blocks=64, block_size=4, max_num_seqs=8, budget=32, max_model_len=256,
                   caching=True, eos=()) -> Scheduler:
    bm = BlockManager(num_blocks, block_size, caching)
    return Scheduler(bm, max_num_seqs, budget, max_model_len, eos_token_ids=eos)


def make_seq(seq_id: int, prompt, arrival: float = 0.0, **params) -> Sequence:
    params.setdefault("temperature", 0.0)
    return Sequence(seq_id, f"req-{seq_id}", 0, list(prompt), SamplingParams(**params), arrival)


def run_to_completion(sched: Scheduler, depth: int = 1, model: FakeModel | None = None,
                      max_steps: int = 10_000) -> list:
    """The engine loop, with up to `depth` steps in flight (pipeline parallelism)."""
    model, in_flight, finished = model or FakeModel(sched.bm), [], []
    for _ in range(max_steps):
        while len(in_flight) < depth:
            out = sched.schedule(*sched.micro_batch_limits(depth))
            if out.is_empty:
                break
            in_flight.append((out, model.execute(out)))
        if not in_flight:
            assert not sched.has_unfinished(), "nothing schedulable but requests remain"
            return finished
        out, result = in_flight.pop(0)
        finished += [s for s in sched.update_from_output(out, result) if s.is_finished]
    raise AssertionError("the loop did not finish")


def assert_no_leak(sched: Scheduler) -> None:
    bm = sched.bm
    assert bm.num_free_blocks == bm.num_blocks and not any(bm.ref)
    assert sched.num_running == sched.num_waiting == 0 and not sched.seqs
