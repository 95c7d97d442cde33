"""Sliding-window attention: greedy tokens equal HF's on Mistral (every layer slides) and Qwen2
(full and sliding layers mixed) with a 32-position window, for prompts within it, and past it
(so each sequence decodes across the window's edge, and a batch mixes both), uni and TP=2 /
PP=2, through the C++ decode kernel and without it (the SDPA decode buckets); and turning the
window off in onenode breaks the equality, so the tests see it."""

import pytest

from engine import LLM, SamplingParams
from engine.kernels import build
from engine.model_config import ModelConfig
from tests.engine.oracle import hf_greedy, make_prompts
from tests.engine.tiny_models import WINDOW_BUILDERS

NEW = 24
LENGTHS = (20, 100, 180)  # within the window until decoding crosses it, and far past it


@pytest.fixture(scope="module", params=sorted(WINDOW_BUILDERS))
def case(request, tmp_path_factory):
    path = WINDOW_BUILDERS[request.param](tmp_path_factory.mktemp(request.param))
    prompts = make_prompts(path, LENGTHS)
    return path, prompts, hf_greedy(path, prompts, NEW)


@pytest.fixture(params=["kernels", "no-kernels"])
def kernels(request, monkeypatch):
    _use_kernels(request.param, monkeypatch)


def _use_kernels(which: str, monkeypatch) -> None:
    """The C++ decode kernel, or (ONENODE_CPU_KERNELS=0, in this process and in mp workers)
    the SDPA decode buckets."""
    if which == "no-kernels":
        monkeypatch.setattr(build, "_loaded", False)
        monkeypatch.setenv("ONENODE_CPU_KERNELS", "0")
    elif not build.load():
        pytest.skip("no C++ compiler for the CPU kernels")


def generate(path, prompts, **kw):
    kw.setdefault("kv_cache_space_gib", None if kw.get("device") == "cuda" else 0.05)
    llm = LLM(str(path), dtype="float32", **kw)
    try:
        outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=NEW,
                                                    ignore_eos=True), use_tqdm=False)
        return [o.outputs[0].token_ids for o in outs]
    finally:
        llm.shutdown()


def test_uni_matches_hf(case, kernels):
    path, prompts, ref = case
    assert generate(path, prompts) == ref


def test_chunked_prefill_matches_hf(case):
    """64-token chunks: each chunk after the first attends over a cached prefix."""
    path, prompts, ref = case
    assert generate(path, prompts, max_num_batched_tokens=64) == ref


# Each shape once, one with and one without the kernels: the paths are the uni test's, so the
# suite does not pay for every combination of shape and path.
@pytest.mark.parametrize("tp,pp,which", [(2, 1, "kernels"), (1, 2, "no-kernels")])
def test_mp_matches_hf(case, monkeypatch, tp, pp, which):
    _use_kernels(which, monkeypatch)
    path, prompts, ref = case
    assert generate(path, prompts, tensor_parallel_size=tp, pipeline_parallel_size=pp,
                    distributed_executor_backend="mp") == ref


def test_without_the_window_the_tokens_differ(case, monkeypatch):
    path, prompts, ref = case
    monkeypatch.setattr(ModelConfig, "sliding_window", lambda self, layer: None)
    assert generate(path, prompts) != ref


@pytest.mark.gpu
def test_cuda_matches_hf_on_cuda(case):
    """The Triton decode kernel (split-KV included) with the window, against HF on the GPU."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    path, prompts, _ = case
    ref = hf_greedy(path, prompts, NEW, device="cuda")
    assert generate(path, prompts, device="cuda", gpu_memory_utilization=0.3) == ref
