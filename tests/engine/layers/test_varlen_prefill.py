"""Varlen prefill: a step's prefill sequences (fresh prompts and ones with a cached prefix, between
decode rows) padded into batches of one SDPA call each equal attention computed sequence by
sequence, in both layouts and however the step is cut; packing and unpacking move the right
rows; and a mask that sees one key too far breaks the equality."""

import pytest
import torch

from engine.layers import varlen_prefill
from engine.layers.attention import PagedAttention
from engine.layers.attention_metadata import AttentionMetadata
from engine.layers.attention_plan import attention_plan
from engine.layers.prefill_mask import prefill_mask
from engine.layers.varlen_prefill import Costs, pack_keys, pack_queries, prefill_batches, unpack

BS, D = 4, 16
# (new tokens, cached tokens): fresh prompts, prefix-cache hits, later chunks, a decode row
STEP = [(5, 0), (1, 8), (9, 0), (3, 6), (12, 0), (2, 13), (7, 5), (1, 1)]
ONE_ALIGNED = Costs(call=1e12, row=0, causal=1e-3)  # one call, queries at their positions
ONE_TOP = Costs(call=1e12, row=0, causal=1e3)  # one call, queries from row 0 under a mask
LONE = Costs(call=0, row=0, causal=0.5)  # no call is worth padding: each sequence alone


def _reference(q, k, v, new, window=None):
    """Attention of the last `new` positions of one sequence, written out (float64)."""
    length, group = k.shape[0], q.shape[1] // k.shape[1]
    k, v = (x.double().repeat_interleave(group, 1) for x in (k, v))
    scores = torch.einsum("qhd,khd->hqk", q[-new:].double(), k) * D ** -0.5
    distance = torch.arange(length - new, length)[:, None] - torch.arange(length)[None]
    seen = (distance >= 0) & (distance < (window or length + 1))
    probs = scores.masked_fill(~seen, float("-inf")).softmax(-1)
    return torch.einsum("hqk,khd->qhd", probs, v).reshape(new, -1).float()


def _step(heads, kv_heads, spec=STEP, seed=0):
    """A layer with the cached prefixes written, the step's inputs, and each sequence's whole
    q/k/v (for the reference)."""
    gen = torch.Generator().manual_seed(seed)
    attn = PagedAttention(heads, kv_heads, D, D ** -0.5)
    attn.allocate_cache(64, BS, torch.float32, "cpu")
    seqs, slots, tables, qsl, lens, next_block = [], [], [], [0], [], 1
    for new, cached in spec:
        n = new + cached
        q, k, v = (torch.randn(n, h, D, generator=gen) for h in (heads, kv_heads, kv_heads))
        table = list(range(next_block, next_block + -(-n // BS)))
        next_block += len(table)
        seq_slots = [table[t // BS] * BS + t % BS for t in range(n)]
        for cache, x in ((attn.k_cache, k), (attn.v_cache, v)):
            cache.view(kv_heads, -1, D)[:, seq_slots[:cached]] = x[:cached].transpose(0, 1)
        seqs.append((q, k, v, new))
        slots += seq_slots[cached:]
        tables.append(table)
        qsl.append(qsl[-1] + new)
        lens.append(n)
    width = max(map(len, tables))
    meta = AttentionMetadata(torch.tensor(slots), qsl, lens,
                             torch.tensor([t + [0] * (width - len(t)) for t in tables]), BS)
    inputs = [torch.cat([x[-new:] for *xs, new in seqs for x in xs[i:i + 1]]) for i in range(3)]
    return attn, inputs, meta, seqs


def _expected(seqs, window=None):
    return torch.cat([_reference(q, k, v, new, window) for q, k, v, new in seqs])


@pytest.mark.parametrize("costs", [ONE_ALIGNED, ONE_TOP, LONE, varlen_prefill.COSTS["cpu"]],
                         ids=["one-aligned", "one-top", "lone", "cpu"])
@pytest.mark.parametrize("heads,kv_heads", [(4, 2), (4, 4), (8, 1)])
@pytest.mark.parametrize("in_place", [False, True])
def test_padded_batches_equal_attention_per_sequence(monkeypatch, costs, heads, kv_heads,
                                                     in_place):
    monkeypatch.setitem(varlen_prefill.COSTS, "cpu", costs)
    attn, (q, k, v), meta, seqs = _step(heads, kv_heads)
    attn.in_place = in_place and attn.in_place
    out = attn(q, k, v, meta)
    assert not out.isnan().any()
    torch.testing.assert_close(out, _expected(seqs), rtol=1e-4, atol=1e-5)
    batches = meta._prefill_batches
    assert sum(b.num_seqs for b in batches) == 6  # every prefill sequence, once
    if costs is not LONE and costs is not varlen_prefill.COSTS["cpu"]:
        assert len(batches) == 1 and batches[0].aligned == (costs is ONE_ALIGNED)


@pytest.mark.parametrize("costs", [ONE_ALIGNED, ONE_TOP, LONE], ids=["aligned", "top", "lone"])
@pytest.mark.parametrize("window", [1, 3, 8])
def test_sliding_window_reaches_every_layout(monkeypatch, costs, window):
    monkeypatch.setitem(varlen_prefill.COSTS, "cpu", costs)
    attn, (q, k, v), meta, seqs = _step(4, 2)
    attn.sliding_window = window
    decode = [i for i, (_, _, _, new) in enumerate(seqs) if new == 1]
    out = attn(q, k, v, meta)
    want = _expected(seqs, window)
    prefill = [r for r in range(q.shape[0]) if r not in {meta.query_start_loc[i] for i in decode}]
    torch.testing.assert_close(out[prefill], want[prefill], rtol=1e-4, atol=1e-5)


def test_no_cache_path_equals_the_cached_one_for_fresh_prompts(monkeypatch):
    monkeypatch.setitem(varlen_prefill.COSTS, "cpu", ONE_ALIGNED)
    spec = [(5, 0), (17, 0), (1, 0), (9, 0)]
    attn, (q, k, v), meta, seqs = _step(4, 2, spec)
    meta.no_cache = True
    torch.testing.assert_close(attn(q, k, v, meta), _expected(seqs), rtol=1e-4, atol=1e-5)


def test_a_mask_one_key_too_far_breaks_the_equality(monkeypatch):
    """The deliberate bug: every query also sees the key after its own position."""
    monkeypatch.setitem(varlen_prefill.COSTS, "cpu", ONE_TOP)
    monkeypatch.setattr(varlen_prefill, "prefill_mask",
                        lambda n, lens, first, *a: prefill_mask(n, lens + 1, first, *a))
    attn, (q, k, v), meta, seqs = _step(4, 2)
    assert not torch.allclose(attn(q, k, v, meta), _expected(seqs), rtol=1e-4, atol=1e-5)


def test_packing_moves_each_row_to_its_place_and_back(monkeypatch):
    monkeypatch.setitem(varlen_prefill.COSTS, "cpu", ONE_TOP)
    attn, (q, k, v), meta, seqs = _step(2, 2)
    (batch,) = prefill_batches(meta, attention_plan(meta).prefill, "cpu")
    packed = pack_queries(q, batch)  # [S, h, rows, d]
    assert packed.shape == (6, 2, batch.rows, D)
    rows = batch.token_rows
    assert rows.tolist() == sorted(rows.tolist())  # outputs come back in the step's order
    torch.testing.assert_close(unpack(packed, batch), q[rows].reshape(len(rows), -1))
    attn.k_cache.view(2, -1, D).index_copy_(1, meta.slot_mapping, k.transpose(0, 1))
    keys = pack_keys(k, attn.k_cache, batch)  # from the cache, by block
    for s, p in enumerate(batch.seqs):
        whole = seqs[p.index][1]
        torch.testing.assert_close(keys[s, :, :p.length], whole.transpose(0, 1))


def test_fresh_batches_take_keys_from_the_new_rows(monkeypatch):
    monkeypatch.setitem(varlen_prefill.COSTS, "cpu", ONE_ALIGNED)
    attn, (q, k, v), meta, seqs = _step(2, 2, [(3, 0), (6, 0), (2, 0)])
    (batch,) = prefill_batches(meta, attention_plan(meta).prefill, "cpu")
    assert batch.blocks is None and batch.rows == batch.keys == 6 and batch.mask() is None
    keys = pack_keys(k, None, batch)
    for s, p in enumerate(batch.seqs):
        torch.testing.assert_close(keys[s, :, :p.length], seqs[p.index][1].transpose(0, 1))


def test_cost_model_cuts_only_where_padding_costs_more_than_a_call():
    def runs(spec, costs):
        meta = _step(2, 2, spec)[2]
        seqs = attention_plan(meta).prefill
        return [[p.length for p in run] for run in varlen_prefill._cut(seqs, BS, costs)]

    alike = [(n, 0) for n in (30, 31, 32, 33)]
    assert runs(alike, Costs(call=2_000, row=1, causal=0.5)) == [[30, 31, 32, 33]]
    assert runs(alike, LONE) == [[30], [31], [32], [33]]
    one_long = [(200, 0), (10, 0), (12, 0), (9, 0)]
    assert runs(one_long, Costs(call=2_000, row=1, causal=0.5)) == [[9, 10, 12], [200]]
    assert runs(one_long, ONE_ALIGNED) == [[9, 10, 12, 200]]
