"""Varlen prefill against the oracle: greedy tokens equal HF's when prompts of very different
lengths are prefilled together, when some of them continue a cached prefix and others do not,
and when long prompts are prefilled in chunks: with the step cut as the CPU cost model says, and
forced into one call in either layout (engine/layers/varlen_prefill.py). A mask that sees one
key too far breaks the equality. On llama and qwen3; on CUDA too where a GPU is."""

import pytest

from engine import LLM, SamplingParams
from engine.layers import varlen_prefill
from engine.layers.prefill_mask import prefill_mask
from engine.layers.varlen_prefill import Costs
from tests.engine.oracle import hf_greedy, make_prompts
from tests.engine.tiny_models import make_llama, make_qwen3

NEW = 10
LENGTHS = (3, 200, 17, 64, 1, 120)
ONE_CALL = {"aligned": Costs(call=1e12, row=0, causal=1e-3),
            "top": Costs(call=1e12, row=0, causal=1e3)}


@pytest.fixture(scope="module", params=["llama", "qwen3"])
def case(request, tmp_path_factory):
    build = {"llama": make_llama, "qwen3": make_qwen3}[request.param]
    path = build(tmp_path_factory.mktemp(request.param))
    mixed = make_prompts(path, LENGTHS)
    long = mixed[1]
    # Against the cache the mixed batch leaves: prefix hits of 96 and 32 tokens (whole blocks of
    # 16) with fresh prompts of other lengths between them.
    shared = [long[:100] + mixed[3][:5], make_prompts(path, (150,), seed=1)[0],
              long[:40] + mixed[2], mixed[0] + [5]]
    return path, mixed, shared, hf_greedy(path, mixed + shared, NEW)


def _generate(path, batches, device="cpu", **kw):
    llm = LLM(str(path), dtype="float32", device=device, enable_prefix_caching=True,
              kv_cache_space_gib=None if device == "cuda" else 0.05, **kw)
    try:
        greedy = SamplingParams(temperature=0, max_tokens=NEW, ignore_eos=True)
        outs = [[o.outputs[0].token_ids for o in llm.generate(b, greedy, use_tqdm=False)]
                for b in batches]
        return sum(outs, []), llm.engine.block_manager.prefix_cache_hits
    finally:
        llm.shutdown()


@pytest.mark.parametrize("layout", ["cost-model", "aligned", "top"])
def test_mixed_lengths_and_cached_prefixes_equal_hf(case, layout, monkeypatch):
    path, mixed, shared, ref = case
    if layout in ONE_CALL:
        monkeypatch.setitem(varlen_prefill.COSTS, "cpu", ONE_CALL[layout])
    tokens, hits = _generate(path, [mixed, shared])
    assert hits >= 96 + 32
    assert tokens == ref


@pytest.mark.parametrize("layout", ["cost-model", "aligned", "top"])
def test_chunked_prefill_equals_hf(case, layout, monkeypatch):
    """64-token steps: the 200- and 150-token prompts arrive in chunks after their own cached
    chunks, next to whole short prompts."""
    path, mixed, shared, ref = case
    if layout in ONE_CALL:
        monkeypatch.setitem(varlen_prefill.COSTS, "cpu", ONE_CALL[layout])
    tokens, _ = _generate(path, [mixed + shared[1:2]], max_num_batched_tokens=64)
    assert tokens == ref[:len(mixed)] + ref[len(mixed) + 1:len(mixed) + 2]


def test_a_mask_one_key_too_far_breaks_the_equality(case, monkeypatch):
    path, mixed, shared, ref = case
    monkeypatch.setitem(varlen_prefill.COSTS, "cpu", ONE_CALL["top"])
    monkeypatch.setattr(varlen_prefill, "prefill_mask",
                        lambda n, lens, first, *a: prefill_mask(n, lens + 1, first, *a))
    tokens, _ = _generate(path, [mixed, shared])
    assert tokens != ref


@pytest.mark.gpu
def test_varlen_prefill_equals_hf_on_cuda(case):
    """fp32 on the GPU, HF on the same GPU; CUDA's cost model makes each step one call."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    path, mixed, shared, _ = case
    tokens, _ = _generate(path, [mixed, shared], device="cuda", gpu_memory_utilization=0.3)
    assert tokens == hf_greedy(path, mixed + shared, NEW, device="cuda")
