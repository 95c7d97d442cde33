"""The Triton decode kernel (CUDA's in-place paged attention) against the gathered-SDPA reference.

Without a GPU it runs in Triton's interpreter on CPU tensors (a subprocess, because
TRITON_INTERPRET must be set before Triton compiles anything): the same kernel source, so the
indexing, masking and online softmax are checked on every machine. On a GPU it runs compiled.
"""

import os
import subprocess
import sys

import pytest
import torch

from engine.kernels import triton_decode
from tests.engine.kernels.reference import PAGED_SHAPES, random_paged_case, reference_decode

pytestmark = pytest.mark.skipif(triton_decode.triton is None, reason="Triton is not installed")

_INTERPRETED = f"""
import torch
from engine.kernels import triton_decode
from tests.engine.kernels.reference import random_paged_case, reference_decode
for dtype, tol in ((torch.float32, 1e-5), (torch.float16, 2e-3)):
    for heads, kv_heads, d in {PAGED_SHAPES!r}:
        q, kc, vc, tables, lens = random_paged_case(dtype, heads, kv_heads, d)
        out = triton_decode.paged_decode(q, kc, vc, tables, lens, d ** -0.5)
        assert out.shape == (q.shape[0], heads * d) and out.dtype == dtype
        ref = reference_decode(q, kc, vc, tables, lens, d ** -0.5)
        torch.testing.assert_close(out.float(), ref, atol=tol, rtol=tol)
print("ok")
"""


def test_kernel_matches_reference_in_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", _INTERPRETED], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("heads,kv_heads,d", PAGED_SHAPES)
def test_kernel_matches_reference_on_cuda(dtype, tol, heads, kv_heads, d):
    q, kc, vc, tables, lens = random_paged_case(dtype, heads, kv_heads, d, device="cuda")
    out = triton_decode.paged_decode(q, kc, vc, tables, lens, d ** -0.5)
    ref = reference_decode(q, kc, vc, tables, lens, d ** -0.5)
    torch.testing.assert_close(out.float(), ref, atol=tol, rtol=tol)


def test_cuda_kernels_can_be_turned_off(monkeypatch):
    assert triton_decode.enabled()
    monkeypatch.setenv("ONENODE_CUDA_KERNELS", "0")
    assert not triton_decode.enabled()
