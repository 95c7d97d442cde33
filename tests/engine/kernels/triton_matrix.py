"""The Triton decode kernel's case matrix, run in a process of its own (TRITON_INTERPRET must be
set before Triton compiles anything, and the CUDA lock's Triton sits first on PYTHONPATH).

    python -m tests.engine.kernels.triton_matrix [--mutant NAME]

prints one JSON line: the Triton version, the number of cases and the failures. A mutant is the
kernel's own source with one deliberate bug, loaded from a temporary file, for the test that the
matrix catches it (run on the fp32, head_dim 64 part of the matrix: the interpreter is slow).
"""

import argparse
import importlib.util
import itertools
import json
import sys
import tempfile
from pathlib import Path

import torch

from tests.engine.kernels.reference import random_paged_case, reference_decode

SOURCE = Path(__file__).resolve().parents[3] / "engine" / "kernels" / "triton_decode.py"
# (dtype, head_dim, GQA group, block size): every combination, two KV heads each.
MATRIX = list(itertools.product(("float32", "bfloat16"), (64, 128), (1, 4, 8), (16, 32)))
SPLITS = (1, 3)  # one pass, and split-KV with a split past some contexts' last block
# Each mutant: (original text, buggy text). The first reads one key past each context's end
# (an off-by-one mask); the second combines split-KV partials without rescaling them to the
# global max; the third reads the keys before a sliding window's first one in its first block.
MUTANTS = {"mask": ("b * BLOCK_SIZE + t < length", "b * BLOCK_SIZE + t <= length"),
           "combine": ("tl.exp(m - tl.max(m, axis=0))", "tl.exp(m - m)"),
           "window": (" & (b * BLOCK_SIZE + t >= lo)", "")}


def cases(matrix=MATRIX, splits=SPLITS) -> list[tuple]:
    """(dtype, head_dim, group, block size, window, splits): the matrix without a window, and
    its fp32 half with a window of block size - 3 (0: none), which starts mid-block for every
    context of `lengths` longer than it."""
    return [(*case, window, s) for case in matrix for s in splits
            for window in ((0,) if case[0] != "float32" else (0, case[3] - 3))]


def lengths(bs: int) -> tuple[int, ...]:
    """One token, a block edge each side, and contexts that cross two and four blocks."""
    return (1, bs - 1, bs, bs + 1, 3 * bs + 5)


def check(module, dtype_name, d, group, bs, window, splits, device="cpu") -> str | None:
    """None when the kernel matches the reference on this case, else what differs."""
    dtype = getattr(torch, dtype_name)
    q, kc, vc, tables, lens = random_paged_case(dtype, 2 * group, 2, d, device, num_blocks=24,
                                                bs=bs, lens=lengths(bs))
    out = module.paged_decode(q, kc, vc, tables, lens, d ** -0.5, num_splits=splits,
                              window=window)
    ref = reference_decode(q, kc, vc, tables, lens, d ** -0.5, window)
    if out.shape != ref.shape or out.dtype != dtype:
        return f"shape/dtype {tuple(out.shape)} {out.dtype}"
    # bf16: the kernel's fp32 result rounded once, so compare with the reference rounded once,
    # within bf16's default tolerance (about two units in the last place).
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {}
    try:
        torch.testing.assert_close(out, ref.to(dtype), **tol)
    except AssertionError as exc:
        return " ".join(str(exc).split())[:300] or "mismatch"
    return None


def load_mutant(name: str, tmp: Path):
    old, new = MUTANTS[name]
    text = SOURCE.read_text()
    assert old in text, f"mutant {name}: {old!r} is no longer in the kernel"
    path = tmp / f"triton_decode_{name}.py"
    path.write_text(text.replace(old, new))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mutant", choices=sorted(MUTANTS))
    args = parser.parse_args()
    import triton

    with tempfile.TemporaryDirectory() as tmp:
        if args.mutant:
            module = load_mutant(args.mutant, Path(tmp))
        else:
            from engine.kernels import triton_decode as module
        matrix = MATRIX if not args.mutant else [c for c in MATRIX if c[:2] == ("float32", 64)]
        todo = cases(matrix)
        failures = []
        for case in todo:
            problem = check(module, *case)
            if problem:
                failures.append(f"{case}: {problem}")
    print(json.dumps({"triton": triton.__version__, "cases": len(todo),
                      "failures": failures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
