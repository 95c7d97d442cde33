"""Long context: greedy tokens equal HF's past the original context for every rope scaling a
tiny checkpoint declares (longrope with partial rotation on Phi-3, YaRN on Qwen2, dynamic NTK on
Llama), uni and TP=2 / PP=2; and turning the scaling off in onenode breaks the equality, so the
tests see it. Prompts shorter than the original context cross it while decoding."""

import functools

import pytest

from engine.layers import rope_scaling, rotary
from tests.engine.oracle import engine_greedy, hf_greedy, make_prompts
from tests.engine.tiny_models import LONG_CONTEXT_BUILDERS

NEW = 24
LENGTHS = (20, 50, 300)  # below, around and far past the original contexts (32 and 64)


@pytest.fixture(scope="module", params=sorted(LONG_CONTEXT_BUILDERS))
def case(request, tmp_path_factory):
    path = LONG_CONTEXT_BUILDERS[request.param](tmp_path_factory.mktemp(request.param))
    prompts = make_prompts(path, LENGTHS)
    # One HF model per prompt: HF's dynamic rope keeps the longest length it has seen.
    ref = [hf_greedy(path, [p], NEW)[0] for p in prompts]
    return request.param, path, prompts, ref


generate = functools.partial(engine_greedy, new_tokens=NEW)


def test_uni_matches_hf(case):
    _, path, prompts, ref = case
    assert generate(path, prompts) == ref


def test_chunked_prefill_matches_hf(case):
    """A long prompt in 64-token chunks still rotates with its whole length's frequencies."""
    _, path, prompts, ref = case
    assert generate(path, prompts, max_num_batched_tokens=64) == ref


@pytest.mark.parametrize("tp,pp", [(2, 1), (1, 2)])
def test_mp_matches_hf(case, tp, pp):
    _, path, prompts, ref = case
    assert generate(path, prompts, tensor_parallel_size=tp, pipeline_parallel_size=pp,
                    distributed_executor_backend="mp") == ref


def test_without_the_scaling_the_tokens_differ(case, monkeypatch):
    """Plain rope frequencies (and no attention factor) in place of the declared scaling."""
    _, path, prompts, ref = case
    plain = rope_scaling._default
    monkeypatch.setattr(rotary, "inv_freq", lambda rope, seq_len=None: plain(rope, seq_len))
    monkeypatch.setattr(rotary, "attention_factor", lambda rope: 1.0)
    assert generate(path, prompts) != ref


def test_without_per_sequence_lengths_the_tokens_differ(case, monkeypatch):
    """Length-dependent types must pick frequencies by the sequence's length, not by each
    token's own position."""
    name, path, prompts, ref = case
    if name == "qwen2-yarn":
        pytest.skip("yarn does not depend on the length")
    monkeypatch.setattr(rotary.RotaryEmbedding, "forward", _ignoring_lengths)
    assert generate(path, prompts) != ref


_forward = rotary.RotaryEmbedding.forward


def _ignoring_lengths(self, positions, x, meta=None):
    return _forward(self, positions, x, None)


def test_longrope_without_recompute_at_the_boundary_differs(case, monkeypatch):
    """A prompt shorter than the original context that decodes past it: HF's Phi-3 recomputes
    its cache with the long factors there, and so must onenode."""
    name, path, prompts, ref = case
    if name != "phi3-longrope":
        pytest.skip("only longrope switches factors")
    from engine.loop.engine_setup import EngineSetup

    monkeypatch.setattr(EngineSetup, "_rope_rules", lambda self: (False, None))
    assert generate(path, prompts[:1])[0] != ref[0]


@pytest.mark.gpu
def test_cuda_matches_hf_on_cuda(case):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    _, path, prompts, _ = case
    ref = [hf_greedy(path, [p], NEW, device="cuda")[0] for p in prompts]
    assert generate(path, prompts, device="cuda", gpu_memory_utilization=0.3) == ref
