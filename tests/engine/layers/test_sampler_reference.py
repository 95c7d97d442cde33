"""The batched sampler draws the same tokens as the per-row sampler it replaced (kept here as
the reference: a full sort per row for top-p, one torch.multinomial per row) for the same
seeds, over many random logits and settings, nuclei wider than the first candidate window
included. A deliberate bug in the batched top-p is seen."""

import random

import pytest
import torch

from engine.core.scheduler_output import ScheduledSeq
from engine.layers import sampling_filters
from engine.layers.logits_processors import process_logits
from engine.layers.sampler import sample
from engine.sampling_params import SamplingParams


def reference_filter(row, temperature, top_k, top_p, min_p):
    row = row / max(temperature, 1e-5)
    if top_k > 0 and top_k < row.numel():
        kth = torch.topk(row, top_k).values[-1]
        row = row.masked_fill(row < kth, float("-inf"))
    if top_p < 1.0:
        sorted_vals, order = torch.sort(row, descending=True)
        probs = torch.softmax(sorted_vals, dim=-1)
        drop = probs.cumsum(-1) - probs >= top_p
        drop[0] = False
        row = row.clone()
        row[order[drop]] = float("-inf")
    if min_p > 0:
        probs = torch.softmax(row, dim=-1)
        row = row.masked_fill(probs < min_p * probs.max(), float("-inf"))
    return row


def reference_sample(logits, seqs) -> list[int]:
    logits = process_logits(logits.float().cpu(), seqs)
    tokens = []
    for i, s in enumerate(seqs):
        p = s.params
        if p.greedy:
            tokens.append(int(logits[i].argmax()))
            continue
        probs = torch.softmax(reference_filter(logits[i], p.temperature, p.top_k, p.top_p,
                                               p.min_p), dim=-1)
        gen = torch.Generator().manual_seed(hash((p.seed, len(s.output_token_ids))) & (2**63 - 1))
        tokens.append(int(torch.multinomial(probs, 1, generator=gen).item()))
    return tokens


def random_batch(rng: random.Random, n: int, vocab: int):
    """Random rows: greedy or seeded random, any mix of filters and some penalties."""
    logits = torch.randn(n, vocab, generator=torch.Generator().manual_seed(rng.randrange(1 << 30)))
    logits *= rng.choice([0.5, 2.0, 6.0])
    seqs = []
    for i in range(n):
        params = SamplingParams(
            temperature=rng.choice([0.0, 0.3, 0.7, 1.0, 1.5, 3.0]),
            top_k=rng.choice([-1, -1, 1, 5, 50, vocab // 2]),
            top_p=rng.choice([1.0, 0.99, 0.9, 0.5, 0.1, 1e-9]),
            min_p=rng.choice([0.0, 0.0, 0.05, 0.2]), seed=rng.randrange(1 << 20),
            repetition_penalty=rng.choice([1.0, 1.0, 1.3]))
        outputs = [rng.randrange(vocab) for _ in range(rng.randrange(5))]
        seqs.append(ScheduledSeq(i, [1], 0, [0], True, params, output_token_ids=outputs,
                                 prompt_token_ids=[1, 2, 3]))
    return logits, seqs


@pytest.mark.parametrize("vocab", [64, 3000])
def test_batched_sampler_draws_the_reference_tokens(vocab):
    rng = random.Random(vocab)
    for _ in range(25):
        logits, seqs = random_batch(rng, rng.randrange(1, 12), vocab)
        assert [t.token_id for t in sample(logits, seqs)] == reference_sample(logits, seqs)


def test_filters_equal_the_reference_with_wide_nuclei():
    """High temperatures and top_p near 1 push nuclei past the first 256 candidates."""
    torch.manual_seed(1)
    logits = torch.randn(16, 5000)
    temps = torch.tensor([0.5, 1.0, 2.0, 4.0] * 4)
    top_p = torch.tensor([0.999, 0.99, 0.95, 0.6] * 4)
    zeros = torch.zeros(16)
    ours = sampling_filters.filter_logits(logits, temps, torch.full((16,), -1), top_p, zeros)
    for i in range(16):
        ref = reference_filter(logits[i], temps[i].item(), -1, top_p[i].item(), 0.0)
        assert torch.equal(torch.isinf(ours[i]), torch.isinf(ref))
    assert (~torch.isinf(ours)).sum(-1).max() > sampling_filters.TOP_P_CANDIDATES


def test_a_nucleus_cut_at_the_candidate_window_is_seen(monkeypatch):
    """Bug: never widening the window keeps at most 256 tokens of a wide nucleus."""
    monkeypatch.setattr(sampling_filters, "_nucleus", _no_widening(sampling_filters._nucleus))
    torch.manual_seed(1)
    logits = torch.randn(1, 5000)
    ours = sampling_filters.filter_logits(logits, torch.tensor([2.0]), torch.tensor([-1]),
                                          torch.tensor([0.99]), torch.zeros(1))
    ref = reference_filter(logits[0], 2.0, -1, 0.99, 0.0)
    assert not torch.equal(torch.isinf(ours[0]), torch.isinf(ref))


def _no_widening(nucleus):
    def buggy(logits, probs, top_p, width):
        _, kept = nucleus(logits, probs, top_p, width)
        return torch.ones(len(logits), dtype=torch.bool), kept
    return buggy
