"""The padded prefill batch's mask: causal by position, HF's sliding-window rule, padding rows on
key 0 only, against a rule written out query by query."""

import pytest
import torch

from engine.layers.prefill_mask import prefill_mask


def _mask(query_lens, context_lens, offsets, rows, keys, window=None):
    t = [torch.tensor(x) for x in (query_lens, context_lens, offsets)]
    return prefill_mask(*t, rows, keys, window)


def _by_hand(query_lens, context_lens, offsets, rows, keys, window=None):
    out = torch.zeros(len(query_lens), 1, rows, keys, dtype=torch.bool)
    for s, (n, length, first) in enumerate(zip(query_lens, context_lens, offsets)):
        for r in range(rows):
            if not first <= r < first + n:
                out[s, 0, r, 0] = True
                continue
            pos = length - n + r - first
            for k in range(keys):
                out[s, 0, r, k] = 0 <= pos - k < (window or 10 ** 9)
    return out


CASES = [  # query_lens, context_lens, offsets, rows, keys: top and aligned layouts
    ([3, 5, 1], [3, 9, 12], [0, 0, 0], 5, 16),
    ([3, 5, 1], [3, 9, 12], [0, 4, 11], 12, 12),
    ([4], [4], [0], 4, 4),
]


@pytest.mark.parametrize("window", [None, 1, 2, 3, 100])
@pytest.mark.parametrize("case", CASES)
def test_mask_follows_the_rule_query_by_query(case, window):
    assert torch.equal(_mask(*case, window), _by_hand(*case, window))


def test_fresh_prompt_is_causal_and_a_window_keeps_the_last_w_keys():
    causal = _mask([4], [4], [0], 4, 4)[0, 0]
    assert torch.equal(causal, torch.ones(4, 4, dtype=torch.bool).tril())
    windowed = _mask([4], [4], [0], 4, 4, window=2)[0, 0]
    assert windowed.int().tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]


def test_cached_prefix_rows_see_the_prefix_and_no_padding_key():
    mask = _mask([2], [5], [0], 3, 8)[0, 0]
    assert mask[0].int().tolist() == [1, 1, 1, 1, 0, 0, 0, 0]  # position 3
    assert mask[1].int().tolist() == [1, 1, 1, 1, 1, 0, 0, 0]  # position 4: the last key
    assert mask[2].int().tolist() == [1, 0, 0, 0, 0, 0, 0, 0]  # padding row: key 0 only


def test_top_and_aligned_layouts_agree_on_real_rows():
    top = _mask([2, 3], [6, 3], [0, 0], 3, 6, window=3)
    aligned = _mask([2, 3], [6, 3], [4, 0], 6, 6, window=3)
    assert torch.equal(top[0, 0, :2], aligned[0, 0, 4:6])
    assert torch.equal(top[1, 0, :3], aligned[1, 0, :3])


def test_no_row_is_fully_masked_even_when_the_window_passes_the_keys():
    """A padding row far past its sequence's keys, under a window, would see nothing by the rule
    (NaN in some kernels); it sees key 0."""
    mask = _mask([1, 6], [20, 6], [0, 0], 6, 20, window=2)
    assert mask.any(dim=-1).all()


def test_window_must_be_positive():
    with pytest.raises(ValueError, match="sliding_window"):
        _mask([2], [2], [0], 2, 2, window=0)
