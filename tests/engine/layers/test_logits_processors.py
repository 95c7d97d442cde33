"""Logits processors on plain tensors: penalties (HF's repetition penalty, vLLM's frequency and
presence rules), bans, bias, allowed ids and the grammar bitmask (against xgrammar's own)."""

import pytest
import torch
from transformers.generation.logits_process import (
    MinNewTokensLengthLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    SequenceBiasLogitsProcessor,
)

from engine.core.scheduler_output import ScheduledSeq
from engine.layers.logits_processors import (
    bad_word_bans,
    process_logits,
    unpack_bitmask,
)
from engine.layers.sampler import sample
from engine.sampling_params import SamplingParams

V = 64


def seq(outputs=(), prompt=None, banned=None, bitmask=None, **params) -> ScheduledSeq:
    params.setdefault("temperature", 0)
    return ScheduledSeq(0, [1], 0, [0], True, SamplingParams(**params),
                        output_token_ids=list(outputs), prompt_token_ids=prompt,
                        banned_token_ids=banned, grammar_bitmask=bitmask)


def logits(seed=0, n=1) -> torch.Tensor:
    return torch.randn(n, V, generator=torch.Generator().manual_seed(seed)) * 3


def test_repetition_penalty_matches_transformers():
    raw, prompt, out = logits(1), [3, 4, 5, 4], [9, 3, 20]
    ours = process_logits(raw, [seq(out, prompt, repetition_penalty=1.7)])
    hf = RepetitionPenaltyLogitsProcessor(1.7)(torch.tensor([prompt + out]), raw.clone())
    assert torch.allclose(ours, hf)


def test_frequency_and_presence_follow_the_openai_formula():
    raw, out = logits(2), [7, 7, 7, 11]
    ours = process_logits(raw, [seq(out, frequency_penalty=0.5, presence_penalty=1.25)])
    want = raw.clone()
    want[0, 7] -= 3 * 0.5 + 1.25
    want[0, 11] -= 1 * 0.5 + 1.25
    assert torch.allclose(ours, want)
    assert torch.equal(raw, logits(2)), "the raw logits (for logprobs) stay untouched"


def test_penalties_change_the_greedy_token():
    raw = torch.zeros(1, V)
    raw[0, 5], raw[0, 6] = 2.0, 1.5
    assert sample(raw, [seq([5])])[0].token_id == 5
    assert sample(raw, [seq([5], presence_penalty=1.0)])[0].token_id == 6


def test_min_tokens_bans_like_transformers_min_new_tokens():
    raw = logits(3)
    ours = process_logits(raw, [seq([1, 2], banned=[2, 9])])
    hf = MinNewTokensLengthLogitsProcessor(0, 5, [2, 9])(torch.tensor([[1, 2]]), raw.clone())
    assert torch.equal(ours, hf)


def test_logit_bias_matches_transformers_sequence_bias():
    raw = logits(4)
    ours = process_logits(raw, [seq(logit_bias={3: 4.0, 10: -2.5})])
    hf = SequenceBiasLogitsProcessor({(3,): 4.0, (10,): -2.5})(torch.tensor([[1]]), raw.clone())
    assert torch.allclose(ours, hf)


def test_allowed_token_ids_keep_only_those():
    out = process_logits(logits(5), [seq(allowed_token_ids=[4, 40])])
    assert torch.isfinite(out[0]).nonzero().flatten().tolist() == [4, 40]


def test_bad_words_ban_the_last_token_after_the_prefix():
    words = [[7], [3, 4, 5]]
    assert bad_word_bans(words, []) == [7]
    assert bad_word_bans(words, [1, 3, 4]) == [7, 5]
    assert bad_word_bans(words, [4]) == [7]
    p = seq([3, 4])
    p.params._bad_words_token_ids = words
    out = process_logits(logits(6), [p])
    assert torch.isinf(out[0, [5, 7]]).all() and torch.isfinite(out[0, 3])


@pytest.mark.parametrize("vocab", [64, 70])
def test_bitmask_unpacks_like_xgrammar_applies_it(vocab):
    xgr = pytest.importorskip("xgrammar")
    gen = torch.Generator().manual_seed(vocab)
    allowed = torch.rand(vocab, generator=gen) < 0.3
    words = torch.zeros(1, (vocab + 31) // 32, dtype=torch.int32)
    for t in allowed.nonzero().flatten().tolist():
        words[0, t // 32] |= torch.tensor(1 << (t % 32), dtype=torch.int64).to(torch.int32)
    raw = torch.randn(1, vocab, generator=gen)
    theirs = raw.clone()
    xgr.apply_token_bitmask_inplace(theirs, words)
    assert torch.equal(unpack_bitmask(words[0].numpy().tobytes(), vocab), allowed)
    ours = process_logits(raw, [seq(bitmask=words[0].numpy().tobytes())])
    assert torch.equal(torch.isinf(ours), torch.isinf(theirs))


def test_wider_logits_than_the_bitmask_ban_the_padding():
    packed = torch.tensor([-1], dtype=torch.int32).numpy().tobytes()  # 32 tokens allowed
    assert unpack_bitmask(packed, 40).tolist() == [True] * 32 + [False] * 8


def test_penalties_ignore_out_of_range_ids():
    out = process_logits(torch.ones(1, 4), [seq([], [1, 99], repetition_penalty=2.0)])
    assert out[0].tolist() == [1.0, 0.5, 1.0, 1.0]


def test_unconstrained_batch_is_not_copied():
    raw = logits(7, n=2)
    assert process_logits(raw, [seq(), seq()]) is raw


def test_a_row_with_nothing_allowed_falls_back_to_the_model():
    raw = logits(8)
    nothing = torch.zeros(2, dtype=torch.int32).numpy().tobytes()
    out = process_logits(raw, [seq(bitmask=nothing)])
    assert torch.equal(out, raw)
    assert sample(raw, [seq(bitmask=nothing, temperature=1.0)])[0].token_id in range(V)
