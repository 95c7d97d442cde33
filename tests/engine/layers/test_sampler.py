"""Sampler: greedy, filters (checked against HF transformers' logits processors), repetition
penalty, logprobs, and per-request seeds that do not depend on the batch around them."""

import math

import pytest
import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from engine.core.scheduler_output import ScheduledSeq
from engine.layers.sampler import sample
from engine.layers.sampling_filters import filter_logits as batched_filter
from engine.sampling_params import SamplingParams

torch.set_num_threads(1)
V = 64


def row(seq_id=0, outputs=(), prompt=None, **params) -> ScheduledSeq:
    return ScheduledSeq(seq_id, [1], 0, [0], True, SamplingParams(**params),
                        output_token_ids=list(outputs), prompt_token_ids=prompt)


def filter_logits(row, temperature, top_k, top_p, min_p) -> torch.Tensor:
    """One row through the batched filters."""
    t = lambda v, dtype=torch.float32: torch.tensor([v], dtype=dtype)
    return batched_filter(row.unsqueeze(0), t(temperature), t(top_k, torch.long), t(top_p),
                          t(min_p))[0]


def random_logits(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, V, generator=torch.Generator().manual_seed(seed)) * 3


def test_greedy_is_batched_argmax_next_to_random_rows():
    logits = random_logits(5)
    seqs = [row(i, temperature=0.0) if i % 2 == 0 else row(i, temperature=1.0, seed=i)
            for i in range(5)]
    seqs[2] = row(2, temperature=0.7, top_k=1)  # top_k=1 is greedy too
    tokens = [t.token_id for t in sample(logits, seqs)]
    argmax = logits.argmax(-1).tolist()
    assert [tokens[i] for i in (0, 2, 4)] == [argmax[i] for i in (0, 2, 4)]


@pytest.mark.parametrize("temperature,top_k,top_p,min_p", [
    (1.0, 5, 1.0, 0.0), (0.7, -1, 0.8, 0.0), (1.3, -1, 1.0, 0.1), (0.9, 10, 0.6, 0.05),
    (1.0, -1, 0.3, 0.0)])
def test_filters_match_transformers(temperature, top_k, top_p, min_p):
    logits = random_logits(8, seed=top_k + 11)
    hf = logits.clone()
    warpers = [TemperatureLogitsWarper(temperature)]
    if top_k > 0:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1:
        warpers.append(TopPLogitsWarper(top_p))
    if min_p > 0:
        warpers.append(MinPLogitsWarper(min_p))
    for w in warpers:  # HF's order: temperature, top-k, top-p, min-p
        hf = w(None, hf)
    for i in range(len(logits)):
        ours = filter_logits(logits[i], temperature, top_k, top_p, min_p)
        assert torch.equal(torch.isinf(ours), torch.isinf(hf[i]))
        keep = ~torch.isinf(ours)
        torch.testing.assert_close(ours[keep], hf[i][keep])


def test_top_p_keeps_the_smallest_head_reaching_p():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    kept = lambda p: (~torch.isinf(filter_logits(probs.log(), 1.0, -1, p, 0.0))).sum().item()
    assert (kept(0.5), kept(0.79), kept(0.81), kept(0.96)) == (1, 2, 3, 4)


def test_min_p_is_relative_to_the_top_token():
    probs = torch.tensor([0.4, 0.3, 0.19, 0.11])
    out = filter_logits(probs.log(), 1.0, -1, 1.0, 0.5)
    assert torch.isinf(out).tolist() == [False, False, True, True]


def test_sampled_frequencies_follow_the_filtered_distribution():
    torch.manual_seed(0)
    base = torch.tensor([2.0, 1.5, 1.0, 0.0] + [-1.0] * (V - 4))
    n = 3000
    seqs = [row(i, temperature=1.0, top_k=3) for i in range(n)]
    counts = torch.bincount(torch.tensor([t.token_id for t in sample(base.repeat(n, 1), seqs)]),
                            minlength=V).float()
    assert counts[3:].sum() == 0
    torch.testing.assert_close(counts[:3] / n, torch.softmax(base[:3], -1), atol=0.03, rtol=0)


def test_repetition_penalty_matches_transformers():
    logits = random_logits(2, seed=3)
    prompt, outputs = [1, 2, 3, 40], [3, 7, 63]
    hf = RepetitionPenaltyLogitsProcessor(1.3)(torch.tensor([prompt + outputs]), logits[:1])
    out = sample(logits, [row(0, outputs, prompt, temperature=0.0, repetition_penalty=1.3,
                              logprobs=0), row(1, temperature=0.0)])
    assert out[0].token_id == hf.argmax().item()
    assert out[1].token_id == logits[1].argmax().item()


def test_penalty_changes_a_greedy_choice():
    logits = torch.full((1, V), -5.0)
    logits[0, 10], logits[0, 11] = 3.0, 2.0
    pick = lambda p: sample(logits, [row(0, [10], [1], temperature=0.0,
                                         repetition_penalty=p)])[0].token_id
    assert (pick(1.0), pick(2.0)) == (10, 11)


def test_logprobs_of_chosen_and_top_tokens():
    logits = random_logits(3, seed=5)
    seqs = [row(0, temperature=0.0, logprobs=3), row(1, temperature=0.0, logprobs=0),
            row(2, temperature=0.0)]
    a, b, c = sample(logits, seqs)
    ref = torch.log_softmax(logits, -1)
    assert a.logprob == pytest.approx(ref[0].max().item())
    assert len(a.top_logprobs) == 3 and a.token_id in a.top_logprobs
    top3 = torch.topk(ref[0], 3)
    assert a.top_logprobs == pytest.approx(dict(zip(top3.indices.tolist(),
                                                    top3.values.tolist())))
    assert b.logprob == pytest.approx(ref[1, b.token_id].item()) and b.top_logprobs == {}
    assert c.logprob is None and c.top_logprobs is None
    assert all(math.isfinite(v) for v in a.top_logprobs.values())


def _seeded_run(seed: int, position: int, batch: int, steps: int = 12) -> list[int]:
    """Generate `steps` tokens for one seeded request placed at `position` in a batch of
    unseeded and differently seeded neighbours."""
    logits = torch.zeros(batch, V)  # flat: every token equally likely, the seed decides
    outputs: list[int] = []
    for _ in range(steps):
        seqs = [row(i, temperature=1.0, seed=None if i % 2 else 1000 + i) for i in range(batch)]
        seqs[position] = row(position, outputs, temperature=0.8, top_p=0.9, seed=seed)
        outputs.append(sample(logits, seqs)[position].token_id)
    return outputs


def test_seeded_rows_do_not_depend_on_the_batch():
    alone = _seeded_run(42, 0, 1)
    assert _seeded_run(42, 3, 5) == alone
    assert _seeded_run(42, 6, 8) == alone
    assert _seeded_run(43, 0, 1) != alone
    assert len(set(alone)) > 3  # a seed gives a sequence, not one repeated token


def test_unseeded_rows_use_the_global_generator():
    logits = torch.zeros(4, V)
    seqs = [row(i, temperature=1.0) for i in range(4)]
    torch.manual_seed(7)
    first = [t.token_id for t in sample(logits, seqs)]
    torch.manual_seed(7)
    assert [t.token_id for t in sample(logits, seqs)] == first


def test_half_precision_logits_are_accepted():
    logits = random_logits(2).to(torch.bfloat16)
    out = sample(logits, [row(0, temperature=0.0), row(1, temperature=0.5, seed=1)])
    assert out[0].token_id == logits[0].float().argmax().item()
    assert 0 <= out[1].token_id < V
