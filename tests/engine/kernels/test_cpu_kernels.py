"""The C++ CPU kernels against PyTorch references, and the fallback when they cannot be built.

The model-level oracle (greedy tokens equal to HF for uni, TP and PP) runs through these kernels
in tests/engine/test_llm_oracle.py and test_parallel_oracle.py; here each kernel is checked
alone, on shapes the models do not cover (head_dim not a multiple of 8, GQA groups of 1..4,
scattered blocks, lengths that end mid-block)."""

import pytest
import torch

from engine.kernels import build
from tests.engine.kernels.reference import PAGED_SHAPES, random_paged_case, reference_decode

pytestmark = pytest.mark.skipif(not build.load(), reason="no C++ compiler for the CPU kernels")


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("heads,kv_heads,d", PAGED_SHAPES)
def test_paged_decode_matches_sdpa_over_gathered_blocks(dtype, tol, heads, kv_heads, d):
    q, kc, vc, tables, lens = random_paged_case(dtype, heads, kv_heads, d)
    out = torch.ops.onenode.paged_decode(q, kc, vc, tables, lens, d ** -0.5)
    assert out.shape == (q.shape[0], heads * d) and out.dtype == dtype
    ref = reference_decode(q, kc, vc, tables, lens, d ** -0.5)
    torch.testing.assert_close(out.float(), ref, atol=tol, rtol=tol)


@pytest.mark.parametrize("window", [1, 5, 16, 17, 64])
def test_paged_decode_starts_at_the_sliding_windows_first_key(window):
    """Windows of one key, within a block, exactly a block, a block and one, and longer than
    most contexts: keys before the window (random data) must not be read."""
    heads, kv_heads, d = PAGED_SHAPES[0]
    q, kc, vc, tables, lens = random_paged_case(torch.float32, heads, kv_heads, d)
    out = torch.ops.onenode.paged_decode(q, kc, vc, tables, lens, d ** -0.5, window=window)
    ref = reference_decode(q, kc, vc, tables, lens, d ** -0.5, window)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    full = reference_decode(q, kc, vc, tables, lens, d ** -0.5)
    assert not torch.allclose(out, full)  # the window hid some keys


# (heads, KV heads, d, block_size): the AVX-512 one-pass path for groups of 1, 3 and 8 (its
# register tiles are per group) and d = 64, 128 and 48 (a 16-wide slice of head_dim where 32 does
# not divide it), 16 keys per step in blocks of 8, 16 and 32; the other paths for d = 40 (not a
# multiple of 16) and a group of 16 (more heads than the tiles hold).
ONE_PASS_SHAPES = [(8, 8, 64, 16), (9, 3, 64, 16), (24, 3, 128, 32), (8, 1, 64, 8),
                   (6, 2, 48, 16), (6, 2, 40, 16), (16, 1, 32, 16)]
ONE_PASS_LENS = (1, 15, 16, 17, 33, 47, 300)  # one key, mid-block ends, block edges, a long one


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("heads,kv_heads,d,bs", ONE_PASS_SHAPES)
def test_paged_decode_matches_for_every_group_width_and_block_size(dtype, tol, heads, kv_heads,
                                                                   d, bs):
    q, kc, vc, tables, lens = random_paged_case(dtype, heads, kv_heads, d, bs=bs,
                                                lens=ONE_PASS_LENS)
    for window in (0, 7, 40):  # 7 and 40 cut blocks mid-way in every block size here
        out = torch.ops.onenode.paged_decode(q, kc, vc, tables, lens, d ** -0.5, window=window)
        ref = reference_decode(q, kc, vc, tables, lens, d ** -0.5, window)
        torch.testing.assert_close(out.float(), ref, atol=tol, rtol=tol)


@pytest.mark.parametrize("growing", [True, False])
def test_paged_decode_rescales_when_a_later_key_scores_far_higher(growing):
    """Keys scaled up (or down) block by block, so the scores' max keeps rising far past the
    first block's (or falls away from it): the one-pass softmax must rescale what it summed."""
    heads, kv_heads, d, bs = 9, 3, 64, 16
    q, kc, vc, tables, lens = random_paged_case(torch.float32, heads, kv_heads, d, bs=bs,
                                                lens=(300,))
    ramp = torch.linspace(0.2, 6.0, tables.shape[1])
    kc[:, tables[0]] *= (ramp if growing else ramp.flip(0))[None, :, None, None]
    out = torch.ops.onenode.paged_decode(q, kc, vc, tables, lens, d ** -0.5)
    torch.testing.assert_close(out, reference_decode(q, kc, vc, tables, lens, d ** -0.5),
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("rows,k,n", [(1, 576, 960), (2, 64, 33), (3, 20, 7), (4, 1536, 576),
                                      (9, 64, 40), (16, 576, 97), (13, 1536, 31), (5, 23, 2)])
def test_skinny_gemm_matches_linear(dtype, tol, rows, k, n):
    g = torch.Generator().manual_seed(rows * k)
    x = torch.randn(rows, k, generator=g).to(dtype)
    w = torch.randn(n, k, generator=g).to(dtype)
    b = torch.randn(n, generator=g).to(dtype)
    for bias in (None, b):
        ref = torch.nn.functional.linear(x.float(), w.float(), None if bias is None else b.float())
        out = torch.ops.onenode.skinny_gemm(x, w, bias)
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), ref, atol=tol * k ** 0.5, rtol=tol)


def test_the_library_is_cached_per_source_torch_and_flags(tmp_path, monkeypatch):
    # The real compile (~45 s with every source) already ran for this suite (`make test` builds
    # the library first, and the tests above load it): here the "compiler" copies that build, so
    # what is checked is the cache's naming, its atomic rename and its reuse.
    built = build.build()
    monkeypatch.setattr(build, "compile_command", lambda out: ["cp", str(built), str(out)])
    monkeypatch.setenv("ONENODE_KERNEL_DIR", str(tmp_path))
    path = build.library_path()
    assert path.parent == tmp_path and torch.__version__.split("+")[0] not in path.name
    assert build.build() == path and path.exists()
    stamp = path.stat().st_mtime_ns
    assert build.build() == path and path.stat().st_mtime_ns == stamp  # reused, not rebuilt


def test_without_a_compiler_the_engine_falls_back_with_one_warning(tmp_path, monkeypatch,
                                                                   caplog):
    monkeypatch.setenv("ONENODE_KERNEL_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler")
    assert build._try_load() is False
    assert "PyTorch attention" in caplog.text and "no C++ compiler" in caplog.text
    monkeypatch.setenv("ONENODE_CPU_KERNELS", "0")
    assert build._try_load() is False


def _rms_reference(x, residual, weight, eps):
    if residual is not None:
        x = x + residual
    var = x.float().pow(2).mean(-1, keepdim=True)
    return (x.float() * torch.rsqrt(var + eps)).to(x.dtype) * weight, x


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_rms_norm_rounds_like_the_pytorch_module(dtype):
    g = torch.Generator().manual_seed(1)
    x, res = (torch.randn(37, 576, generator=g).to(dtype) for _ in range(2))
    w = (1 + 0.1 * torch.randn(576, generator=g)).to(dtype)
    out, summed = torch.ops.onenode.rms_norm(x, res, w, 1e-5)
    ref, ref_sum = _rms_reference(x, res, w, 1e-5)
    assert torch.equal(summed, ref_sum)  # the residual stream is bit-exact
    # the variance sums in another order: a few units in the last place
    torch.testing.assert_close(out, ref, atol=0, rtol=2 ** -21 if dtype == torch.float32
                               else 2 ** -7)
    alone, none = torch.ops.onenode.rms_norm(x, None, w, 1e-5)
    assert none is None
    torch.testing.assert_close(alone, _rms_reference(x, None, w, 1e-5)[0], atol=0,
                               rtol=2 ** -21 if dtype == torch.float32 else 2 ** -7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_silu_and_mul_and_rotary_match_pytorch(dtype):
    g = torch.Generator().manual_seed(2)
    x = (3 * torch.randn(9, 2 * 40, generator=g)).to(dtype)
    gate, up = x[:, :40], x[:, 40:]
    ref = torch.nn.functional.silu(gate) * up
    assert torch.equal(torch.ops.onenode.silu_and_mul(x), ref)  # ATen's own silu: bit-exact
    qkv = torch.randn(9, 5 * 16, generator=g).to(dtype)
    qk = qkv[:, :4 * 16].view(9, 4, 16)  # a strided view, as in the attention layer
    angles = torch.randn(9, 8, generator=g)
    cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
    x1, x2 = qk[..., :8], qk[..., 8:]
    c, s = cos[:, None], sin[:, None]
    ref = torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)
    assert torch.equal(torch.ops.onenode.rotary(qk, cos, sin), ref)  # same roundings, exactly


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 7, 300])  # below and above the kernel's parallel grain
def test_silu_and_mul_is_pytorchs_on_every_row_chunk(dtype, rows):
    x = (3 * torch.randn(rows, 2 * 1536, generator=torch.Generator().manual_seed(rows))).to(dtype)
    assert torch.equal(torch.ops.onenode.silu_and_mul(x),
                       torch.nn.functional.silu(x[:, :1536]) * x[:, 1536:])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cache_write_puts_each_row_at_its_slot_and_nothing_else(dtype):
    g = torch.Generator().manual_seed(3)
    kvh, blocks, bs, d, tokens = 3, 9, 4, 8, 11
    k_cache = torch.randn(kvh, blocks, bs, d, generator=g).to(dtype)
    v_cache = torch.randn(kvh, blocks, bs, d, generator=g).to(dtype)
    qkv = torch.randn(tokens, 5 * kvh * d, generator=g).to(dtype)  # strided views, as in a layer
    k = qkv[:, :kvh * d].view(tokens, kvh, d)
    v = qkv[:, 2 * kvh * d:3 * kvh * d].view(tokens, kvh, d)
    slots = torch.randperm(blocks * bs, generator=g)[:tokens]
    ref_k, ref_v = k_cache.clone(), v_cache.clone()
    ref_k.view(kvh, -1, d).index_copy_(1, slots, k.transpose(0, 1))
    ref_v.view(kvh, -1, d).index_copy_(1, slots, v.transpose(0, 1))
    torch.ops.onenode.cache_write(k, v, k_cache, v_cache, slots)
    assert torch.equal(k_cache, ref_k) and torch.equal(v_cache, ref_v)
