"""The correctness oracle: greedy tokens from LLM.generate equal HF transformers' generate on the
same tiny random checkpoint (fp32, CPU; bf16 too; on CUDA where a GPU is present) — plain, under
preemption, with prefix-cache hits, and on the PyTorch fallback without the C++ kernels."""

import pytest

from engine import LLM, SamplingParams
from tests.engine.oracle import (assert_equal_up_to_near_ties, check_by_margin, hf_greedy,
                                 make_prompts)
from tests.engine.tiny_models import BUILDERS

NEW_TOKENS = 12


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def checkpoint(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    BUILDERS[request.param](path)
    return request.param, path


def _greedy(n=NEW_TOKENS):
    return SamplingParams(temperature=0, max_tokens=n, ignore_eos=True)


def test_greedy_tokens_equal_hf(checkpoint):
    _, path = checkpoint
    prompts = make_prompts(path, lengths=(3, 17, 40, 9))
    llm = LLM(str(path), kv_cache_space_gib=0.05, dtype="float32")
    outs = llm.generate(prompts, _greedy(), use_tqdm=False)
    assert [o.outputs[0].token_ids for o in outs] == hf_greedy(path, prompts, NEW_TOKENS)
    assert llm.engine.block_manager.num_free_blocks == llm.engine.num_blocks  # no leak
    llm.shutdown()


def test_greedy_tokens_equal_hf_in_bfloat16(checkpoint):
    """bf16 end to end (weights, activations, KV cache) through the CPU kernels (skinny GEMM and
    prefill attention included), against HF transformers in bf16. The prefill kernel keeps P V
    in float32 where HF's SDPA rounds P to bf16 first, so a near-tie of HF's own logits (a few
    bf16 ulps: the qwen3_moe checkpoint has one of 1 ulp) may go the other way; past near-ties
    the tokens must be HF's."""
    import torch

    _, path = checkpoint
    prompts = make_prompts(path, lengths=(3, 17, 40, 9))
    llm = LLM(str(path), kv_cache_space_gib=0.05, dtype="bfloat16")
    outs = [o.outputs[0].token_ids for o in llm.generate(prompts, _greedy(), use_tqdm=False)]
    llm.shutdown()
    assert_equal_up_to_near_ties(path, prompts, outs,
                                 hf_greedy(path, prompts, NEW_TOKENS, dtype=torch.bfloat16))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_greedy_tokens_equal_hf_on_cuda(checkpoint, dtype):
    """On a GPU, decode attention runs in the Triton kernel that reads the paged cache in
    place; HF runs on the same GPU. fp32: the same tokens. bf16: HF's top-1 wherever it is
    decisive (tests/engine/oracle.py), since exact bf16 equality flips on near ties."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    _, path = checkpoint
    prompts = make_prompts(path, lengths=(3, 17, 40, 9))
    llm = LLM(str(path), device="cuda", dtype=dtype, gpu_memory_utilization=0.3)
    layers = llm.engine.executor.worker.runner.model.attention_layers()
    assert all(layer.in_place for layer in layers)
    outs = [o.outputs[0].token_ids for o in llm.generate(prompts, _greedy(), use_tqdm=False)]
    llm.shutdown()
    if dtype == "float32":
        assert outs == hf_greedy(path, prompts, NEW_TOKENS, device="cuda")
    else:
        problems, checked = check_by_margin(path, prompts, outs, device="cuda")
        assert problems == [] and checked > 0


def test_preemption_keeps_tokens_and_frees_blocks(checkpoint):
    _, path = checkpoint
    prompts = make_prompts(path, lengths=(9, 10, 11, 8, 10, 9))
    # 12 blocks of 4 tokens: four prompts are admitted, then cannot all grow by 12 tokens, so
    # the latest admitted are preempted and recomputed.
    llm = LLM(str(path), dtype="float32", block_size=4, max_model_len=48,
              max_num_batched_tokens=64, num_gpu_blocks_override=12)
    outs = llm.generate(prompts, _greedy(), use_tqdm=False)
    assert llm.engine.scheduler.num_preemptions > 0
    assert [o.outputs[0].token_ids for o in outs] == hf_greedy(path, prompts, NEW_TOKENS)
    assert llm.engine.block_manager.num_free_blocks == 12
    llm.shutdown()


def test_shared_prefix_hits_cache_and_keeps_tokens(checkpoint):
    name, path = checkpoint
    base = make_prompts(path, lengths=(40,))[0]
    prompts = [base + [7 + i, 9 + i] for i in range(4)]
    llm = LLM(str(path), kv_cache_space_gib=0.05, dtype="float32")
    llm.generate(prompts[:1], _greedy(), use_tqdm=False)
    outs = llm.generate(prompts[1:], _greedy(), use_tqdm=False)
    assert llm.engine.block_manager.prefix_cache_hits >= 3 * 32
    assert [o.outputs[0].token_ids for o in outs] == hf_greedy(path, prompts[1:], NEW_TOKENS)
    llm.shutdown()


def test_pytorch_fallback_keeps_greedy_tokens(checkpoint, monkeypatch):
    """Without the C++ kernels (no compiler, or ONENODE_CPU_KERNELS=0) the PyTorch paths give the
    same tokens: decode in length buckets, MKL on plain weights for every GEMM."""
    from engine.kernels import build

    _, path = checkpoint
    monkeypatch.setattr(build, "_loaded", False)
    monkeypatch.setenv("ONENODE_CPU_KERNELS", "0")  # no oneDNN packing, nor malloc tuning
    prompts = make_prompts(path, lengths=(3, 17, 40, 9))
    llm = LLM(str(path), kv_cache_space_gib=0.05, dtype="float32")
    model = llm.engine.executor.worker.runner.model
    assert not any(a.in_place for a in model.attention_layers())
    assert not any(getattr(m, "packed", None) is not None for m in model.modules())
    outs = llm.generate(prompts, _greedy(), use_tqdm=False)
    assert [o.outputs[0].token_ids for o in outs] == hf_greedy(path, prompts, NEW_TOKENS)
    llm.shutdown()


@pytest.mark.parametrize("layout", ["plain", "onednn"])
def test_both_cpu_weight_layouts_keep_greedy_tokens(checkpoint, monkeypatch, layout):
    """Intel CPUs run plain weights (MKL, and the skinny kernel up to 16 rows), others oneDNN's
    packed layout: whichever this machine picks, the other is checked here too."""
    import torch

    if layout == "onednn" and not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN")
    _, path = checkpoint
    monkeypatch.setenv("ONENODE_CPU_WEIGHT_LAYOUT", layout)
    prompts = make_prompts(path, lengths=(3, 17, 40, 9))
    llm = LLM(str(path), kv_cache_space_gib=0.05, dtype="float32")
    model = llm.engine.executor.worker.runner.model
    packed = any(getattr(m, "packed", None) is not None for m in model.modules())
    assert packed == (layout == "onednn")
    outs = llm.generate(prompts, _greedy(), use_tqdm=False)
    assert [o.outputs[0].token_ids for o in outs] == hf_greedy(path, prompts, NEW_TOKENS)
    llm.shutdown()
