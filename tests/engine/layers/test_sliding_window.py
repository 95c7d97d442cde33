"""Sliding-window attention: the one rule is HF's, and PagedAttention applies it on every path
(prefill with and without a cached prefix, decode through SDPA buckets and through the in-place
kernel), checked against dense attention under HF's own mask function."""

import pytest
import torch
from torch.nn.functional import scaled_dot_product_attention as sdpa

from engine.layers import decode_kernel
from engine.layers.attention import PagedAttention
from engine.layers.attention_metadata import AttentionMetadata
from engine.layers.sliding_window import first_key, visible

HEADS, KV_HEADS, D, BLOCK = 4, 2, 8, 4


def hf_mask(length: int, window: int | None) -> torch.Tensor:
    from transformers.masking_utils import causal_mask_function, \
        sliding_window_causal_mask_function

    rule = causal_mask_function if window is None else sliding_window_causal_mask_function(window)
    pos = torch.arange(length)
    zero = torch.tensor(0)
    return rule(zero, zero, pos[:, None], pos[None, :]).expand(length, length)


@pytest.mark.parametrize("window", [None, 1, 3, 32])
def test_visible_is_hfs_rule(window):
    pos = torch.arange(40)
    assert torch.equal(visible(pos, pos, window), hf_mask(40, window))
    # The newest query of each context length starts where the mask's last row does.
    assert [first_key(n, window) for n in range(1, 41)] == \
        [int(hf_mask(n, window)[-1].nonzero()[0]) for n in range(1, 41)]


def reference(q, k, v, window):
    """Dense attention of every position of one sequence: [L, heads*d]."""
    length = q.shape[0]
    out = sdpa(q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None],
               attn_mask=hf_mask(length, window), scale=D ** -0.5, enable_gqa=True)
    return out[0].transpose(0, 1).reshape(length, -1)


def _meta(seqs, starts, ends, tables, no_cache=False):
    """One step: sequence s adds positions [starts[s], ends[s])."""
    slots, qsl = [], [0]
    for s, a, b in zip(seqs, starts, ends):
        slots += [int(tables[s, p // BLOCK]) * BLOCK + p % BLOCK for p in range(a, b)]
        qsl.append(qsl[-1] + b - a)
    return AttentionMetadata(torch.tensor(slots), qsl, list(ends), tables[seqs], BLOCK,
                             no_cache=no_cache)


def _rows(x, seqs, starts, ends):
    return torch.cat([x[s, a:b] for s, a, b in zip(seqs, starts, ends)])


# Each step: (sequence, first new position, end) per scheduled sequence. Sequence 0 (70 tokens)
# ends far past the window, sequence 1 (20) within it, sequence 2 crosses it while decoding.
STEPS = [[(0, 0, 40), (1, 0, 19), (2, 0, 30)],  # fresh prompts
         [(0, 40, 69), (1, 19, 20), (2, 30, 31)],  # a chunk over a cached prefix, decodes
         [(0, 69, 70), (2, 31, 32)], [(2, 32, 33)], [(2, 33, 34), (1, 20, 21)]]


@pytest.mark.parametrize("window", [None, 5, 32])
@pytest.mark.parametrize("in_place", [False, True], ids=["sdpa-buckets", "in-place"])
def test_every_cached_path_applies_the_window(window, in_place):
    if in_place and not decode_kernel.available("cpu"):
        pytest.skip("no C++ kernels on this machine")
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 70, h, D, generator=g) for h in (HEADS, KV_HEADS, KV_HEADS))
    attn = PagedAttention(HEADS, KV_HEADS, D, D ** -0.5, sliding_window=window)
    attn.allocate_cache(3 * 18 + 4, BLOCK, torch.float32, "cpu")
    attn.in_place = in_place
    tables = torch.randperm(3 * 18 + 4, generator=g)[:3 * 18].view(3, 18)
    for step in STEPS:
        seqs, starts, ends = zip(*step)
        meta = _meta(list(seqs), starts, ends, tables)
        out = attn(*(_rows(x, seqs, starts, ends) for x in (q, k, v)), meta)
        want = torch.cat([reference(q[s, :b], k[s, :b], v[s, :b], window)[a:b]
                          for s, a, b in step])
        torch.testing.assert_close(out, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("window", [None, 5])
def test_prefill_without_a_cache_applies_the_window(window):
    g = torch.Generator().manual_seed(1)
    lens = (23, 4)
    q, k, v = (torch.randn(sum(lens), h, D, generator=g) for h in (HEADS, KV_HEADS, KV_HEADS))
    attn = PagedAttention(HEADS, KV_HEADS, D, D ** -0.5, sliding_window=window)
    meta = AttentionMetadata(torch.zeros(sum(lens), dtype=torch.long), [0, 23, 27], list(lens),
                             torch.zeros(2, 1, dtype=torch.long), BLOCK, no_cache=True)
    want = torch.cat([reference(q[:23], k[:23], v[:23], window),
                      reference(q[23:], k[23:], v[23:], window)])
    torch.testing.assert_close(attn(q, k, v, meta), want, atol=1e-5, rtol=1e-5)


def test_a_window_that_is_not_a_positive_length_is_refused():
    with pytest.raises(ValueError, match="sliding_window=0"):
        PagedAttention(HEADS, KV_HEADS, D, 1.0, sliding_window=0)
