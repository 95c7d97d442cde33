"""The per-step attention plan: decode rows bucketed by length, prefill rows kept per sequence."""

import torch

from engine.layers.attention_metadata import AttentionMetadata
from engine.layers.attention_plan import DECODE_BUCKET_SEQS, attention_plan


def _meta(query_lens, seq_lens, block_size=4):
    qsl = [0]
    for n in query_lens:
        qsl.append(qsl[-1] + n)
    width = max(-(-n // block_size) for n in seq_lens)
    tables = torch.arange(len(seq_lens) * width).view(len(seq_lens), width)
    return AttentionMetadata(torch.zeros(qsl[-1], dtype=torch.long), qsl, list(seq_lens), tables,
                             block_size)


def test_decode_rows_sorted_into_buckets_padded_to_their_longest():
    n = DECODE_BUCKET_SEQS + 2
    lens = [5 + 3 * ((7 * i) % n) for i in range(n)]
    plan = attention_plan(_meta([1] * n, lens))
    assert not plan.prefill
    assert [b.num_seqs for b in plan.decode] == [DECODE_BUCKET_SEQS, 2]
    first = plan.decode[0]
    rows = first.rows.tolist()
    assert [lens[r] for r in rows] == sorted(lens)[:DECODE_BUCKET_SEQS]
    assert first.width == -(-max(lens[r] for r in rows) // 4) * 4
    assert first.blocks.numel() == first.num_seqs * first.width // 4
    assert first.mask()[:, 0, 0].sum(dim=1).tolist() == [lens[r] for r in rows]


def test_prefill_reads_the_cache_only_after_a_cached_prefix():
    meta = _meta([6, 1, 3], [6, 9, 8])
    plan = attention_plan(meta)
    assert [(p.start, p.end, p.length) for p in plan.prefill] == [(0, 6, 6), (7, 10, 8)]
    assert [p.index for p in plan.prefill] == [0, 2]  # the sequences' places in the step
    assert plan.prefill[0].blocks is None  # fresh prompt: its own new K/V
    assert plan.prefill[1].blocks.tolist() == meta.block_tables[2, :2].tolist()
    assert [b.rows.tolist() for b in plan.decode] == [[6]]
    assert plan.decode[0].mask() is not None  # 9 keys in 3 blocks of 4


def test_plan_is_built_once_per_step():
    meta = _meta([1, 1], [4, 8])
    assert attention_plan(meta) is attention_plan(meta)


def test_in_place_plan_hands_every_decode_row_to_the_kernel_at_once():
    meta = _meta([1, 1, 1], [5, 9, 2])
    plan = attention_plan(meta, in_place=True)
    assert not plan.decode and not plan.prefill
    assert plan.batch.rows is None  # decode-only step: q goes to the kernel as it is
    assert plan.batch.lens.tolist() == [5, 9, 2] and plan.batch.tables is meta.block_tables
    mixed = _meta([6, 1, 3, 1], [6, 9, 8, 4])
    plan = attention_plan(mixed, in_place=True)
    assert plan.batch.rows.tolist() == [6, 10] and plan.batch.lens.tolist() == [9, 4]
    assert plan.batch.tables.tolist() == mixed.block_tables[[1, 3]].tolist()
    assert [p.start for p in plan.prefill] == [0, 7] and not plan.decode
