"""`make gpu-check` on this CPU rig: it says it needs CUDA and exits 2; and what it runs on the lent
machine (the engine's core path, the gpu tests' modules) imports and runs with that machine's
package set, simulated by blocking the packages it lacks."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import gpu_check
from engine.layers import decode_kernel

REPO = Path(__file__).resolve().parents[2]
BLOCKER = Path(__file__).parent / "device_machine"
MISSING = "ray,fastapi,pydantic,xgrammar,gguf"

_CORE_PATH = """
import json, sys, tempfile
from pathlib import Path
for name in "MISSING".split(","):
    try:
        __import__(name)
        sys.exit(f"{name} should be blocked")
    except ImportError:
        pass
from engine import LLM, SamplingParams
from tests.engine.oracle import hf_greedy, make_prompts
from tests.engine.tiny_models import make_llama
path = make_llama(Path(tempfile.mkdtemp()))
prompts = make_prompts(path, lengths=(3, 17))
want = hf_greedy(path, prompts, 6)
got = {}
for backend, tp in (("uni", 1), ("mp", 2)):
    llm = LLM(str(path), kv_cache_space_gib=0.05, dtype="float32", tensor_parallel_size=tp,
              distributed_executor_backend=backend)
    outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=6, ignore_eos=True),
                        use_tqdm=False)
    got[backend] = [o.outputs[0].token_ids for o in outs] == want
    llm.shutdown()
import bench.gpu_check
loaded = sorted(m for m in sys.modules if m.split(".")[0] in "MISSING".split(","))
print(json.dumps({"equal": got, "loaded": loaded}))
""".replace("MISSING", MISSING)


def _device_machine_env() -> dict:
    return dict(os.environ, ONENODE_BLOCK_IMPORTS=MISSING,
                PYTHONPATH=os.pathsep.join([str(BLOCKER), str(REPO)]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_make_gpu_check_says_so_and_exits_2(tmp_path):
    proc = subprocess.run(["make", "-s", "gpu-check", f"PY={sys.executable}"], cwd=REPO,
                          env=dict(os.environ, OUT=str(tmp_path)), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "gpu-check needs a CUDA device" in proc.stdout
    assert gpu_check.main(["--out", str(tmp_path)]) == gpu_check.NEEDS_CUDA
    assert not (tmp_path / "gpu_check.json").exists()


def test_the_core_path_runs_without_the_packages_the_gpu_machine_lacks():
    proc = subprocess.run([sys.executable, "-c", _CORE_PATH], cwd=REPO, env=_device_machine_env(),
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"equal": {"uni": True, "mp": True}, "loaded": []}


def test_the_gpu_tests_collect_without_those_packages():
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "gpu",
                           "-p", "no:cacheprovider", *gpu_check.GPU_TESTS], cwd=REPO,
                          env=_device_machine_env(), capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "test_kernel_matches_reference_on_cuda" in proc.stdout
    assert "test_varlen_prefill_equals_hf_on_cuda" in proc.stdout


def test_the_table_has_one_row_per_figure():
    result = {"machine": {"gpu": "NVIDIA H200", "gpus": 1},
              "tests": {"ok": False, "summary": "1 failed, 9 passed", "failed": ["FAILED t::x"]},
              "bench": {"batched_ratio": {"median": 3.25}, "model": "random",
                        "single_stream_memory_roofline_fraction": {"median": 0.42}}}
    text = gpu_check.table(result)
    assert "FAILED: 1 failed, 9 passed" in text and "FAILED t::x" in text
    assert "3.25" in text and "42.0%" in text and len(text.splitlines()) == 7


@pytest.mark.slow
def test_the_bench_part_runs_end_to_end_on_a_small_shape():
    """The same code path as on the GPU (model built here, onenode vs HF, rooflines), on CPU."""
    shape = dict(gpu_check.BENCH_SHAPE, hidden_size=64, intermediate_size=128,
                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 vocab_size=512)
    res = gpu_check.run_bench(2, device="cpu", shape=shape, kv_cache_space_gib=0.05)
    assert set(gpu_check.BENCH_KEYS) <= set(res)
    assert res["decode_kernel"] == "in place" or not decode_kernel.available("cpu")
    assert res["batched_ratio"]["median"] > 0 and "2 layers x 64" in res["model"]
    assert "batched_ratio" in gpu_check.table({"machine": {}, "bench": res})
