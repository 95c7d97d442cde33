"""Sequence: token bookkeeping the scheduler and block manager rely on."""

from engine.core.sequence import SeqStatus, Sequence
from engine.sampling_params import SamplingParams


def test_new_sequence_waits_with_nothing_computed():
    seq = Sequence(7, "req-1", 0, [1, 2, 3], SamplingParams(), arrival=1.5)
    assert seq.status is SeqStatus.WAITING
    assert (seq.num_computed_tokens, seq.num_cached_tokens, seq.block_table) == (0, 0, [])
    assert seq.finish_reason is None and seq.stop_reason is None and not seq.in_flight


def test_token_views_follow_outputs():
    seq = Sequence(0, "r", 0, [5, 6], SamplingParams())
    seq.output_token_ids += [9, 10]
    seq.num_computed_tokens = 3
    assert seq.all_token_ids == [5, 6, 9, 10]
    assert (seq.num_tokens, seq.num_prompt_tokens, seq.num_uncomputed) == (4, 2, 1)
    assert seq.prompt_token_ids == [5, 6]  # outputs never leak into the prompt


def test_identity_not_value_equality():
    a = Sequence(0, "r", 0, [1], SamplingParams())
    b = Sequence(0, "r", 0, [1], SamplingParams())
    assert a != b and a in [a] and b not in [a]  # queues remove by identity
