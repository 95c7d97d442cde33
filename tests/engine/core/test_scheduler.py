"""Scheduler: continuous batching, token budget and chunked prefill, preemption by recompute,
prefix caching, pipeline in-flight exclusion and finish rules — driven by a fake model."""

import random

import pytest

from engine.core.scheduler import MIN_CHUNK
from engine.core.scheduler_output import ModelRunnerOutput, SampledToken
from engine.core.sequence import SeqStatus
from onenode.errors import ConfigError, ResourceError
from tests.engine.core.fake_model import (
    FakeModel,
    assert_no_leak,
    expected_output,
    make_scheduler,
    make_seq,
    run_to_completion,
)


def step(sched, model):
    out = sched.schedule()
    return out, sched.update_from_output(out, model.execute(out))


def test_prompt_longer_than_max_model_len_is_refused_with_both_numbers():
    sched = make_scheduler(max_model_len=8)
    with pytest.raises(ConfigError, match=r"9 tokens.*max_model_len is 8"):
        sched.add(make_seq(0, range(9)))
    assert not sched.has_unfinished()


def test_new_requests_join_the_running_batch():
    sched = make_scheduler()
    model = FakeModel(sched.bm)
    sched.add(make_seq(0, range(5), max_tokens=10))
    step(sched, model)
    sched.add(make_seq(1, range(20, 26), max_tokens=10))
    out, updated = step(sched, model)
    assert [(s.seq_id, len(s.token_ids), s.start_pos) for s in out.seqs] == [(0, 1, 5), (1, 6, 0)]
    assert all(s.sample for s in out.seqs) and len(updated) == 2
    assert sched.num_running == 2


def test_token_budget_chunks_the_last_prompt():
    sched = make_scheduler(budget=10)
    model = FakeModel(sched.bm)
    sched.add(make_seq(0, range(6), max_tokens=4))
    sched.add(make_seq(1, range(30, 38), max_tokens=4))
    sched.add(make_seq(2, range(40, 43), max_tokens=4))
    out, updated = step(sched, model)
    assert [(s.seq_id, len(s.token_ids), s.sample) for s in out.seqs] == [(0, 6, True),
                                                                          (1, 4, False)]
    assert [s.seq_id for s in updated] == [0]  # a partial prefill samples nothing
    out, _ = step(sched, model)
    # Decode first, then the rest of the chunked prompt, then the next prompt in the budget.
    assert [(s.seq_id, len(s.token_ids), s.start_pos, s.sample) for s in out.seqs] == [
        (0, 1, 6, True), (1, 4, 4, True), (2, 3, 0, True)]
    assert out.num_tokens <= 10


def test_max_num_seqs_caps_running():
    sched = make_scheduler(max_num_seqs=2)
    for i in range(4):
        sched.add(make_seq(i, [i] * 3, max_tokens=3))
    out = sched.schedule()
    assert len(out.seqs) == 2 and sched.num_running == 2 and sched.num_waiting == 2


@pytest.mark.parametrize("caching", [True, False])
def test_preemption_keeps_every_request_and_the_same_tokens(caching):
    prompts = [[i] * (5 + i) + list(range(i)) for i in range(6)]
    results = {}
    for blocks in (200, 12):
        sched = make_scheduler(num_blocks=blocks, budget=64, caching=caching)
        for i, p in enumerate(prompts):
            sched.add(make_seq(i, p, arrival=float(i), max_tokens=20))
        done = run_to_completion(sched)
        results[blocks] = {s.seq_id: s.output_token_ids for s in done}
        assert_no_leak(sched)
        if blocks == 12:
            assert sched.num_preemptions > 0
    assert results[200] == results[12]
    assert results[12] == {i: expected_output(p, 20) for i, p in enumerate(prompts)}


def test_preemption_picks_the_latest_arrival_and_requeues_it_first():
    sched = make_scheduler(num_blocks=4, block_size=4)
    model = FakeModel(sched.bm)
    old, new = make_seq(0, range(7), arrival=1.0, max_tokens=9), make_seq(1, range(50, 57),
                                                                            arrival=2.0)
    sched.add(old)
    sched.add(new)
    step(sched, model)  # both prefilled: 2 blocks each, all 4 used
    step(sched, model)  # position 7 fits in the second blocks
    sched.schedule()  # position 8 needs a fifth block: the newer one goes
    assert sched.num_preemptions == 1
    assert new.status is SeqStatus.WAITING and new.num_computed_tokens == 0
    assert new.block_table == [] and sched.waiting[0] is new
    assert len(new.output_token_ids) == 2  # kept; recomputed on re-admission


def test_shared_prefix_hits_are_counted():
    sched = make_scheduler(budget=64)
    model = FakeModel(sched.bm)  # one KV cache across both runs, like a real engine
    prefix = list(range(100, 116))  # 4 full blocks
    sched.add(make_seq(0, prefix + [1, 2], max_tokens=3))
    run_to_completion(sched, model=model)
    sched.add(make_seq(1, prefix + [3, 4, 5], max_tokens=3))
    sched.add(make_seq(2, prefix + [6], max_tokens=3))
    done = run_to_completion(sched, model=model)
    assert sched.bm.prefix_cache_hits == 2 * len(prefix)
    assert all(s.num_cached_tokens == 16 for s in done)
    assert {s.seq_id: s.output_token_ids for s in done} == {
        1: expected_output(prefix + [3, 4, 5], 3), 2: expected_output(prefix + [6], 3)}
    assert_no_leak(sched)


def test_in_flight_sequences_are_not_scheduled_again():
    sched = make_scheduler(max_num_seqs=4)
    model = FakeModel(sched.bm)
    sched.add(make_seq(0, range(4), max_tokens=5))
    first = sched.schedule()
    sched.add(make_seq(1, range(10, 14), max_tokens=5))
    second = sched.schedule()
    assert [s.seq_id for s in first.seqs] == [0] and [s.seq_id for s in second.seqs] == [1]
    assert sched.schedule().is_empty  # both in flight
    sched.update_from_output(first, model.execute(first))
    assert [s.seq_id for s in sched.schedule().seqs] == [0]


def test_a_long_prompt_is_chunked_across_micro_batches_in_flight_together():
    sched = make_scheduler(budget=32)
    model = FakeModel(sched.bm)
    seq = make_seq(0, range(100), max_tokens=2)
    sched.add(seq)
    steps = [sched.schedule(max_tokens=40) for _ in range(3)]
    assert [len(s.seqs[0].token_ids) for s in steps] == [32, 32, 32]  # the budget still caps
    assert seq.in_flight == 3 and not any(s.seqs[0].sample for s in steps)
    last = sched.schedule()
    assert last.seqs[0].sample and seq.in_flight == 4
    assert sched.schedule().is_empty  # the sampling chunk must come back first
    for out in steps + [last]:
        sched.update_from_output(out, model.execute(out))
    assert seq.output_token_ids == expected_output(list(range(100)), 1)


def test_finish_waits_for_every_chunk_in_flight():
    sched = make_scheduler(budget=8)
    model = FakeModel(sched.bm)
    sched.add(make_seq(0, range(20), max_tokens=2))
    first, second = sched.schedule(), sched.schedule()
    sched.finish(0, "abort")
    assert sched.schedule().is_empty  # a finishing sequence gets no more chunks
    sched.update_from_output(first, model.execute(first))
    assert sched.num_running == 1  # its blocks are still under the second chunk
    sched.update_from_output(second, model.execute(second))
    assert_no_leak(sched)


def test_micro_batch_limits_split_sequences_and_tokens_evenly():
    sched = make_scheduler(num_blocks=400, max_num_seqs=64, budget=2048, max_model_len=1024)
    assert sched.micro_batch_limits(1) == (None, None)
    for i in range(9):
        sched.add(make_seq(i, range(10), max_tokens=4))
    sched.add(make_seq(9, range(600), max_tokens=4))
    assert sched.micro_batch_limits(3) == (4, 230)  # 10 seqs, 690 tokens, 3 ways
    while sched.num_pending_tokens > 60:
        sched.schedule(*sched.micro_batch_limits(3))
    assert sched.micro_batch_limits(3)[1] == MIN_CHUNK  # never cut finer than MIN_CHUNK


def _add_random_requests(sched, rng, count: int, max_prompt: int) -> dict[int, list[int]]:
    """`count` random prompts with 1-20 new tokens each (ignore_eos); returns the tokens an
    unbatched run gives each, cut at max_model_len."""
    want = {}
    for i in range(count):
        prompt = [rng.randrange(50) for _ in range(rng.randint(1, max_prompt))]
        n = rng.randint(1, 20)
        sched.add(make_seq(i, prompt, arrival=float(i), max_tokens=n, ignore_eos=True))
        want[i] = expected_output(prompt, min(n, sched.max_model_len - len(prompt)))
    return want


@pytest.mark.parametrize("depth", [2, 3])
def test_split_pipeline_keeps_outputs_with_long_prompts(depth):
    rng = random.Random(10 + depth)
    sched = make_scheduler(num_blocks=200, block_size=4, max_num_seqs=8, budget=96,
                           max_model_len=256)
    want = _add_random_requests(sched, rng, 12, max_prompt=200)
    done = run_to_completion(sched, depth=depth)
    assert {s.seq_id: s.output_token_ids for s in done} == want
    assert_no_leak(sched)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_twenty_random_requests_finish_with_expected_lengths(depth):
    rng = random.Random(depth)
    sched = make_scheduler(num_blocks=40, block_size=4, max_num_seqs=6, budget=24,
                           max_model_len=64)
    want = _add_random_requests(sched, rng, 20, max_prompt=30)
    done = run_to_completion(sched, depth=depth)
    assert {s.seq_id: s.output_token_ids for s in done} == want
    assert all(s.finish_reason == "length" for s in done)
    assert sched.num_preemptions > 0  # the tight cache exercises recompute under every depth
    assert_no_leak(sched)


def test_finish_rules():
    sched = make_scheduler(max_model_len=12, eos=(expected_output([1, 2], 2)[1],))
    eos = sched.eos_token_ids
    cases = {0: dict(max_tokens=2),  # eos is the 2nd token
             1: dict(max_tokens=2, ignore_eos=True),
             2: dict(max_tokens=5, ignore_eos=True, stop_token_ids=[expected_output([1, 2], 3)[2]]),
             3: dict(max_tokens=100, ignore_eos=True)}
    for i, params in cases.items():
        sched.add(make_seq(i, [1, 2], **params))
    done = {s.seq_id: s for s in run_to_completion(sched)}
    assert done[0].finish_reason == "stop" and done[0].stop_reason is None
    assert done[0].output_token_ids[-1] in eos
    assert done[1].finish_reason == "length" and len(done[1].output_token_ids) == 2
    assert done[2].finish_reason == "stop" and len(done[2].output_token_ids) == 3
    assert done[2].stop_reason == done[2].output_token_ids[-1]
    assert done[3].finish_reason == "length" and done[3].num_tokens == 12  # max_model_len
    assert_no_leak(sched)


def test_finish_while_in_flight_frees_after_the_step_returns():
    sched = make_scheduler()
    model = FakeModel(sched.bm)
    seq = make_seq(0, range(6), max_tokens=10)
    sched.add(seq)
    out = sched.schedule()
    sched.finish(0, "stop")
    assert seq.block_table and sched.bm.num_free_blocks < sched.bm.num_blocks
    assert sched.update_from_output(out, model.execute(out)) == []
    assert seq.finish_reason == "stop" and seq.output_token_ids == []
    assert_no_leak(sched)
    assert sched.schedule().finished_seq_ids == []  # nothing to run: ids wait for a real step
    sched.add(make_seq(1, [1], max_tokens=1))
    assert sched.schedule().finished_seq_ids == [0]


def test_abort_request_waiting_and_running():
    sched = make_scheduler(max_num_seqs=1)
    model = FakeModel(sched.bm)
    sched.add(make_seq(0, range(4), max_tokens=10))
    sched.add(make_seq(1, range(4), max_tokens=10))
    step(sched, model)
    sched.abort_request("req-1")  # waiting
    sched.abort_request("req-0")  # running, not in flight
    assert_no_leak(sched)
    assert not sched.has_unfinished()


def test_sampled_token_missing_for_partial_prefill_is_ignored():
    sched = make_scheduler(budget=3)
    seq = make_seq(0, range(5), max_tokens=2)
    sched.add(seq)
    out = sched.schedule()
    assert not out.seqs[0].sample
    sched.update_from_output(out, ModelRunnerOutput({0: SampledToken(1)}))
    assert seq.output_token_ids == []


def test_repetition_penalty_sends_the_prompt():
    sched = make_scheduler()
    sched.add(make_seq(0, [4, 5], repetition_penalty=1.2))
    sched.add(make_seq(1, [6, 7]))
    penalised, plain = sched.schedule().seqs
    assert penalised.prompt_token_ids == [4, 5] and plain.prompt_token_ids is None


def test_a_sequence_that_can_never_fit_is_an_error_not_a_hang():
    sched = make_scheduler(num_blocks=2, block_size=4)
    sched.add(make_seq(0, range(9)))
    with pytest.raises(ResourceError, match="needs 3 KV blocks but the cache has 2"):
        sched.schedule()


def test_min_tokens_bans_eos_and_stop_ids_until_reached():
    sched = make_scheduler(eos=(2,))
    sched.add(make_seq(0, range(5), max_tokens=10, min_tokens=2, stop_token_ids=[7]))
    sched.add(make_seq(1, range(5), max_tokens=10, min_tokens=2, ignore_eos=True))
    out = sched.schedule()
    assert [s.banned_token_ids for s in out.seqs] == [[2, 7], None]
    # A stop id that slips through (it cannot: it is masked) still does not end the sequence.
    sched.update_from_output(out, ModelRunnerOutput({0: SampledToken(7), 1: SampledToken(2)}))
    assert not sched.seqs[0].is_finished
    out = sched.schedule()
    assert out.seqs[0].banned_token_ids == [2, 7]
    sched.update_from_output(out, ModelRunnerOutput({0: SampledToken(5), 1: SampledToken(5)}))
    out = sched.schedule()
    assert [s.banned_token_ids for s in out.seqs] == [None, None]
    sched.update_from_output(out, ModelRunnerOutput({0: SampledToken(2), 1: SampledToken(5)}))
    assert 0 not in sched.seqs  # EOS ends it once min_tokens is met
