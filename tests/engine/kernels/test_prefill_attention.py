"""The C++ prefill attention (engine/kernels/prefill_attention.cpp) against SDPA with an explicit
causal mask, and the layer's choice of it (engine/layers/prefill_kernel.py).

Shapes cross the kernel's tiles: 32 query positions an item, 64 keys a softmax step, 4 score rows
and 6 output rows a register tile, head_dim in 64-wide chunks; GQA groups of 1 to 8; queries after
a cached prefix (offset > 0); keys gathered by block (strided). The model-level oracle runs
through the kernel in tests/engine/test_llm_oracle.py and the other oracle files."""

import pytest
import torch
from torch.nn.functional import scaled_dot_product_attention as sdpa

from engine.kernels import build
from engine.layers import prefill_kernel

pytestmark = pytest.mark.skipif(
    not (build.load() and torch.ops.onenode.prefill_attention_supported()),
    reason="needs the CPU kernels built with AVX-512")

# (queries, cached prefix, heads, KV heads, head_dim)
SHAPES = [(1, 0, 9, 3, 64), (5, 0, 9, 3, 64), (33, 0, 9, 3, 64), (300, 0, 9, 3, 64),
          (70, 130, 9, 3, 64), (1, 99, 9, 3, 64), (40, 24, 8, 8, 128), (65, 10, 4, 1, 32),
          (200, 0, 16, 2, 16), (97, 3, 6, 2, 80)]


def reference(q, k, v, scale):
    n, h, d = q.shape
    mask = torch.ones(n, k.shape[0], dtype=torch.bool).tril(k.shape[0] - n)
    out = sdpa(*(x.float().transpose(0, 1)[None] for x in (q, k, v)), attn_mask=mask,
               scale=scale, enable_gqa=True)
    return out[0].transpose(0, 1).reshape(n, h * d)


def case(n, offset, h, kvh, d, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, h, d, generator=g).to(dtype)
    k = (2 * torch.randn(n + offset, kvh, d, generator=g)).to(dtype)
    v = torch.randn(n + offset, kvh, d, generator=g).to(dtype)
    return q, k, v


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("n,offset,h,kvh,d", SHAPES)
def test_matches_sdpa_with_a_causal_mask(dtype, tol, n, offset, h, kvh, d):
    q, k, v = case(n, offset, h, kvh, d, dtype)
    out = torch.ops.onenode.prefill_attention(q, k, v, d ** -0.5, offset)
    assert out.shape == (n, h * d) and out.dtype == dtype
    torch.testing.assert_close(out.float(), reference(q, k, v, d ** -0.5), atol=tol, rtol=tol)


def test_future_keys_are_never_read():
    """Keys and values after a cut made huge (scores of ~1e3 would win every softmax, values of
    1e4 would dominate every sum) leave the outputs of the queries before the cut bit for bit as
    they were: the causal limit holds per row, inside the 64-key steps too. (Finite, as real
    K/V are: a tile computes the scores of its future keys and multiplies their values by 0.)"""
    q, k, v = case(100, 20, 9, 3, 64)
    base = torch.ops.onenode.prefill_attention(q, k, v, 0.125, 20)
    for cut in (21, 57, 64, 85, 119):  # queries up to position cut - 1 see only keys < cut
        k2, v2 = k.clone(), v.clone()
        k2[cut:], v2[cut:] = 30.0 * q[:1, :3].sign(), 1e4
        out = torch.ops.onenode.prefill_attention(q, k2, v2, 0.125, 20)
        assert torch.equal(out[:cut - 20], base[:cut - 20])
        assert out[cut - 20:].abs().max() > 100  # the queries after the cut did see them


def test_a_max_that_rises_across_key_steps_rescales_what_came_before():
    """Scores that grow by ~10 per key step: each new 64-key step raises the row's max, and the
    earlier steps' sums and outputs must be rescaled (without it the result is far off)."""
    q, k, v = case(40, 300, 9, 3, 64)
    q = q.abs() + 1
    k = k.abs() * torch.linspace(0.01, 2, 340)[:, None, None]
    out = torch.ops.onenode.prefill_attention(q, k, v, 0.125, 300)
    torch.testing.assert_close(out, reference(q, k, v, 0.125), atol=1e-5, rtol=1e-5)


def test_keys_gathered_by_block_are_read_through_their_strides():
    """A cached prefix arrives as [kv_heads, L, d] gathered from the cache, transposed: the same
    result as the contiguous copy."""
    q, k, v = case(30, 50, 9, 3, 64)
    ks, vs = k.transpose(0, 1).contiguous().transpose(0, 1), v.transpose(0, 1).contiguous()
    out = torch.ops.onenode.prefill_attention(q, ks, vs.transpose(0, 1), 0.125, 50)
    assert torch.equal(out, torch.ops.onenode.prefill_attention(q, k, v, 0.125, 50))


def test_one_thread_and_two_give_the_same_bits():
    q, k, v = case(300, 0, 9, 3, 64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = torch.ops.onenode.prefill_attention(q, k, v, 0.125, 0)
        torch.set_num_threads(2)
        two = torch.ops.onenode.prefill_attention(q, k, v, 0.125, 0)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


@pytest.mark.parametrize("bad,match", [
    (lambda q, k, v: (q, k, v, 5), "last n of the len"),
    (lambda q, k, v: (q[..., :24], k[..., :24], v[..., :24], 0), "multiple of 16"),
    (lambda q, k, v: (q.half(), k.half(), v.half(), 0), "float32 or bfloat16"),
    (lambda q, k, v: (q, k.double(), v, 0), "dtypes differ")])
def test_bad_inputs_are_refused_with_the_reason(bad, match):
    q, k, v = case(8, 0, 4, 2, 32)
    q, k, v, offset = bad(q, k, v)
    with pytest.raises(RuntimeError, match=match):
        torch.ops.onenode.prefill_attention(q, k, v, 0.1, offset)


def test_the_layer_takes_the_kernel_only_where_it_applies():
    q = torch.zeros(4, 9, 64)
    assert prefill_kernel.takes(q, 100, None)
    assert prefill_kernel.takes(q, 100, 100)  # a window as long as the context hides nothing
    assert not prefill_kernel.takes(q, 100, 50)  # a narrowing window: SDPA with its mask
    assert not prefill_kernel.takes(q.half(), 100, None)
    assert not prefill_kernel.takes(torch.zeros(4, 9, 40), 100, None)
