"""Batched penalties: every row bit-identical to HF's repetition processor and to the per-row
rules (the reference below is the per-row code they replaced), whatever the other rows hold."""

import random

import torch
from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

from engine.core.scheduler_output import ScheduledSeq
from engine.layers.penalties import apply_penalties
from engine.sampling_params import SamplingParams

V = 512


def seq(outputs, prompt=None, **params) -> ScheduledSeq:
    return ScheduledSeq(0, [1], 0, [0], True, SamplingParams(temperature=0, **params),
                        output_token_ids=list(outputs), prompt_token_ids=prompt)


def reference(row, prompt, output, repetition, frequency, presence) -> None:
    if repetition != 1.0:
        seen = torch.tensor(sorted({t for t in prompt + output if t < row.numel()}),
                            dtype=torch.long)
        if len(seen):
            vals = row[seen]
            limit = torch.finfo(row.dtype).max / 4
            fixed = torch.where(vals > 0, vals / repetition, vals * repetition)
            row[seen] = fixed.nan_to_num(posinf=limit, neginf=-limit).clamp(-limit, limit)
    if output and (frequency or presence):
        counts = torch.bincount(torch.tensor(output), minlength=row.numel())[:row.numel()]
        row -= frequency * counts.to(row.dtype) + presence * (counts > 0).to(row.dtype)


def random_rows(n, rng):
    seqs = []
    for _ in range(n):
        prompt = [rng.randrange(V) for _ in range(rng.randrange(0, 40))]
        out = [rng.randrange(V // 8) for _ in range(rng.randrange(0, 30))]  # repeats likely
        params = rng.choice([dict(repetition_penalty=1.2, frequency_penalty=0.5),
                             dict(repetition_penalty=1.7), dict(presence_penalty=1.25),
                             dict(frequency_penalty=-0.3, presence_penalty=0.4),
                             dict(repetition_penalty=0.8, frequency_penalty=2.0)])
        seqs.append(seq(out, prompt, **params))
    return seqs


def test_every_row_equals_the_per_row_rules_bit_for_bit():
    rng = random.Random(0)
    seqs = random_rows(24, rng)
    logits = torch.randn(30, V, generator=torch.Generator().manual_seed(1)) * 4
    rows = sorted(rng.sample(range(30), 24))
    ours = logits.clone()
    apply_penalties(ours, rows, seqs)
    want = logits.clone()
    for i, s in zip(rows, seqs):
        p = s.params
        reference(want[i], s.prompt_token_ids, s.output_token_ids, p.repetition_penalty,
                  p.frequency_penalty, p.presence_penalty)
    assert torch.equal(ours, want)


def test_repetition_equals_transformers_bit_for_bit():
    prompt, out = [3, 4, 5, 4, 300], [9, 3, 20, 511]
    raw = torch.randn(2, V, generator=torch.Generator().manual_seed(2)) * 3
    ours = raw.clone()
    apply_penalties(ours, [1], [seq(out, prompt, repetition_penalty=1.3)])
    hf = RepetitionPenaltyLogitsProcessor(1.3)(torch.tensor([prompt + out]), raw[1:].clone())
    assert torch.equal(ours[1], hf[0]) and torch.equal(ours[0], raw[0])


def test_each_row_gets_its_own_tokens_not_a_neighbours():
    raw = torch.zeros(2, V)
    ours = raw.clone()
    apply_penalties(ours, [0, 1], [seq([5, 5], presence_penalty=1.0), seq([7])])
    assert ours[0, 5] == -1.0 and ours[0, 7] == 0.0
    assert torch.equal(ours[1], raw[1]), "row 1 has no penalty of its own"


def test_no_rows_is_a_no_op():
    raw = torch.randn(2, V)
    ours = raw.clone()
    apply_penalties(ours, [], [])
    assert torch.equal(ours, raw)
