"""Soft-capped attention (engine/layers/softcap_attention.py) against HF's eager Gemma 2
attention: the cap, GQA, a sliding window and queries that are the last rows of a longer
context."""

import pytest
import torch

from engine.layers.softcap_attention import QUERY_CHUNK, attend


def hf_eager(q, keys, vals, q_first, scale, cap, window):
    """HF's eager_attention_forward (modeling_gemma2) with the additive mask its masking_utils
    builds for a causal (sliding) layer; keys start at position 0."""
    from types import SimpleNamespace

    from transformers.models.gemma2.modeling_gemma2 import eager_attention_forward

    n, h, d = q.shape
    kvh, length = keys.shape[:2]
    qp = torch.arange(q_first, q_first + n)[:, None]
    kp = torch.arange(length)[None]
    seen = (kp <= qp) & ((qp - kp < window) if window else True)
    mask = torch.zeros(n, length).masked_fill(~seen, torch.finfo(q.dtype).min)
    module = SimpleNamespace(num_key_value_groups=h // kvh, training=False, head_dim=d)
    out, _ = eager_attention_forward(module, q.transpose(0, 1)[None], keys[None], vals[None],
                                     mask[None, None], scaling=scale, softcap=cap)
    return out[0].reshape(n, h * d)


@pytest.mark.parametrize("n, length, window", [(7, 7, None), (1, 40, None), (1, 40, 16),
                                                (12, 40, 16), (QUERY_CHUNK + 3, 600, 100)])
def test_matches_hf_eager(n, length, window):
    torch.manual_seed(0)
    q, keys, vals = torch.randn(n, 4, 8) * 3, torch.randn(2, length, 8), torch.randn(2, length, 8)
    ours = attend(q, keys, vals, length - n, 0, 0.3, 2.0, window)
    torch.testing.assert_close(ours, hf_eager(q, keys, vals, length - n, 0.3, 2.0, window))


def test_keys_starting_past_zero_match_the_whole_context():
    """The cached path reads only the blocks a window can see: keys from a later position."""
    torch.manual_seed(1)
    q, keys, vals = torch.randn(3, 4, 8), torch.randn(2, 50, 8), torch.randn(2, 50, 8)
    whole = attend(q, keys, vals, 47, 0, 0.3, 2.0, 10)
    torch.testing.assert_close(attend(q, keys[:, 32:], vals[:, 32:], 47, 32, 0.3, 2.0, 10),
                               whole)


def test_the_cap_changes_the_output():
    torch.manual_seed(2)
    q, keys, vals = torch.randn(5, 4, 8) * 3, torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    capped = attend(q, keys, vals, 0, 0, 0.3, 2.0, None)
    assert not torch.allclose(capped, attend(q, keys, vals, 0, 0, 0.3, 1e9, None), atol=1e-3)
