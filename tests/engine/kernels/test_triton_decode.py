"""The Triton decode kernel (CUDA's in-place paged attention) against the gathered-SDPA reference.

Without a GPU it runs in Triton's interpreter on CPU tensors (a subprocess, because
TRITON_INTERPRET must be set before Triton compiles anything): the same kernel source, so the
indexing, masking, online softmax and split-KV combine are checked on every machine, under the
venv's Triton and under the CUDA lock's (tests/engine/kernels/lock_triton.py), over the matrix
of tests/engine/kernels/triton_matrix.py. On a GPU the matrix runs compiled.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.kernels import triton_decode
from tests.engine.kernels import lock_triton, triton_matrix
from tests.engine.kernels.reference import PAGED_SHAPES

REPO = str(Path(__file__).resolve().parents[3])
needs_venv_triton = pytest.mark.skipif(triton_decode.triton is None,
                                       reason="Triton is not installed")

_INTERPRETED = f"""
import torch
from engine.kernels import triton_decode
from tests.engine.kernels.reference import random_paged_case, reference_decode
for dtype, tol in ((torch.float32, 1e-5), (torch.float16, 2e-3)):
    for heads, kv_heads, d in {PAGED_SHAPES!r}:
        q, kc, vc, tables, lens = random_paged_case(dtype, heads, kv_heads, d)
        ref = reference_decode(q, kc, vc, tables, lens, d ** -0.5)
        for splits in (None, 2):
            out = triton_decode.paged_decode(q, kc, vc, tables, lens, d ** -0.5, splits)
            assert out.shape == (q.shape[0], heads * d) and out.dtype == dtype
            torch.testing.assert_close(out.float(), ref, atol=tol, rtol=tol)
for heads, kv_heads, d in {PAGED_SHAPES[:2]!r}:  # sliding windows: mid-block, and past a block
    q, kc, vc, tables, lens = random_paged_case(torch.float32, heads, kv_heads, d)
    for window in (7, 33):
        ref = reference_decode(q, kc, vc, tables, lens, d ** -0.5, window)
        for splits in (1, 3):
            out = triton_decode.paged_decode(q, kc, vc, tables, lens, d ** -0.5, splits,
                                             window=window)
            torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
print("ok")
"""


def _interpreted(args: list[str], pythonpath: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join(pythonpath))
    return subprocess.run([sys.executable, *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=600, check=False)


@needs_venv_triton
def test_kernel_matches_reference_in_the_interpreter():
    proc = _interpreted(["-c", _INTERPRETED], [REPO])
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


@pytest.fixture(scope="module")
def cuda_lock_triton() -> str:
    try:
        return str(lock_triton.install())
    except (RuntimeError, LookupError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"the CUDA lock's Triton is not available ({exc}); run `make triton-cuda` "
                    f"where PyPI is reachable")


def _matrix(pythonpath: str, *args: str) -> dict:
    proc = _interpreted(["-m", "tests.engine.kernels.triton_matrix", *args], [pythonpath, REPO])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_matrix_matches_reference_under_the_cuda_locks_triton(cuda_lock_triton):
    """fp32/bf16 x head_dim 64/128 x GQA 1/4/8 x block 16/32, one pass and split-KV; fp32
    also with a sliding window."""
    result = _matrix(cuda_lock_triton)
    assert result["triton"] == lock_triton.pinned()[0]
    assert result["cases"] == len(triton_matrix.cases()) == 72
    assert result["failures"] == []


@pytest.mark.slow
@pytest.mark.parametrize("mutant", sorted(triton_matrix.MUTANTS))
def test_the_matrix_catches_a_deliberate_bug(cuda_lock_triton, mutant):
    result = _matrix(cuda_lock_triton, "--mutant", mutant)
    failed = {tuple(json.loads(f.split(":")[0].replace("(", "[").replace(")", "]")
                               .replace("'", '"'))) for f in result["failures"]}
    if mutant == "combine":  # only split-KV combines partials
        assert failed and all(case[-1] > 1 for case in failed)
        assert len(failed) == result["cases"] // 2
    elif mutant == "window":  # only a window has keys before it
        assert failed and all(case[-2] > 0 for case in failed)
        assert len(failed) == result["cases"] // 2
    else:
        assert len(failed) == result["cases"]


def test_splits_fill_the_sms_for_small_batches_only():
    choose = triton_decode.choose_splits
    assert choose(programs=8, max_blocks=64, sms=132) == 32  # batch 1, 8 KV heads
    assert choose(programs=8, max_blocks=6, sms=132) == 3  # short context: >= 2 blocks each
    assert choose(programs=256 * 8, max_blocks=64, sms=132) == 1  # a full batch
    assert choose(programs=8, max_blocks=64, sms=0) == 1  # the interpreter


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", triton_matrix.cases(splits=(*triton_matrix.SPLITS, None)))
def test_kernel_matches_reference_on_cuda(case):
    assert triton_matrix.check(triton_decode, *case, device="cuda") is None


@needs_venv_triton
def test_cuda_kernels_can_be_turned_off(monkeypatch):
    assert triton_decode.enabled()
    monkeypatch.setenv("ONENODE_CUDA_KERNELS", "0")
    assert not triton_decode.enabled()
