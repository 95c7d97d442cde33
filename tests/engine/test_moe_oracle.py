"""Mixture-of-experts under every split: greedy tokens equal HF transformers' (fp32) with experts
sliced over TP, whole experts split over EP = 2 and 4 ranks, and PP x EP (mp backend, gloo).
A checkpoint with two experts swapped, or a router that prefers one expert, breaks the equality,
so the tests see both the experts each rank holds and the routing."""

import pytest
import torch
from safetensors.torch import load_file, save_file

import engine.layers.router as router
from engine import LLM, SamplingParams
from tests.engine.oracle import assert_equal_up_to_near_ties, hf_greedy, make_prompts
from tests.engine.tiny_models import make_mixtral, make_qwen2_moe, make_qwen3_moe


NEW = 10


def run(path, prompts, dtype="float32", **kw):
    llm = LLM(str(path), kv_cache_space_gib=0.05, dtype=dtype, **kw)
    try:
        outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=NEW,
                                                    ignore_eos=True), use_tqdm=False)
        return [o.outputs[0].token_ids for o in outs], llm.engine.stats()
    finally:
        llm.shutdown()


@pytest.fixture(scope="module")
def qwen3_moe(tmp_path_factory):
    path = make_qwen3_moe(tmp_path_factory.mktemp("qwen3_moe"))
    prompts = make_prompts(path, lengths=(5, 23, 12))
    return path, prompts, hf_greedy(path, prompts, NEW)


@pytest.mark.parametrize("tp,pp,ep", [(2, 1, False), (2, 1, True),
                                      pytest.param(2, 2, True, marks=pytest.mark.slow)],
                         ids=["tp2-sliced", "ep2", "pp2xep2"])
def test_qwen3_moe_splits_match_hf(qwen3_moe, tp, pp, ep):
    path, prompts, ref = qwen3_moe
    tokens, stats = run(path, prompts, tensor_parallel_size=tp, pipeline_parallel_size=pp,
                    enable_expert_parallel=ep, distributed_executor_backend="mp")
    assert tokens == ref
    # 2 sparse layers x top-2 x every token fed (the prompt, then all but the last new token).
    pairs = 2 * 2 * sum(len(p) + NEW - 1 for p in prompts)
    load = stats["expert_tokens"]
    assert sorted(load) == list(range(tp))
    assert sum(load.values()) == (pairs if ep else tp * pairs)  # sliced: every rank, every pair
    assert stats["expert_imbalance"] >= 1.0


@pytest.mark.slow
def test_qwen3_moe_ep4_matches_hf(qwen3_moe):
    """Four ranks, two experts each; four query heads over two KV heads (replicated)."""
    path, prompts, ref = qwen3_moe
    tokens, _ = run(path, prompts, tensor_parallel_size=4, enable_expert_parallel=True,
                    distributed_executor_backend="mp")
    assert tokens == ref


def test_qwen3_moe_ep2_in_bfloat16_matches_hf(qwen3_moe):
    """Attention's TP all-reduce sums bf16 partials in another order than HF's one GEMM, so a
    near-tie may flip; every difference must be one (exact equality holds on one rank)."""
    path, prompts, _ = qwen3_moe
    tokens, _ = run(path, prompts, tensor_parallel_size=2, enable_expert_parallel=True,
                    distributed_executor_backend="mp", dtype="bfloat16")
    ref = hf_greedy(path, prompts, NEW, dtype=torch.bfloat16)
    assert_equal_up_to_near_ties(path, prompts, tokens, ref)


@pytest.mark.parametrize("maker", [make_mixtral, make_qwen2_moe], ids=["mixtral", "qwen2_moe"])
def test_other_moe_families_ep2_match_hf(tmp_path, maker):
    """Mixtral's w1/w2/w3 experts; Qwen2-MoE's sigmoid-gated shared expert sliced over TP."""
    path = maker(tmp_path)
    prompts = make_prompts(path, lengths=(7, 19))
    tokens, _ = run(path, prompts, tensor_parallel_size=2, enable_expert_parallel=True,
                    distributed_executor_backend="mp")
    assert tokens == hf_greedy(path, prompts, NEW)


def test_swapped_experts_break_equality_under_ep(qwen3_moe, tmp_path):
    """Experts 1 and 6 of layer 0 exchanged in the checkpoint (they live on different EP ranks)."""
    path, prompts, ref = qwen3_moe
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    for f in path.iterdir():
        if f.suffix != ".safetensors":
            (swapped / f.name).write_bytes(f.read_bytes())
    tensors = load_file(str(path / "model.safetensors"))
    a, b = "model.layers.0.mlp.experts.1.", "model.layers.0.mlp.experts.6."
    for name in [n for n in tensors if n.startswith(a)]:
        other = b + name[len(a):]
        tensors[name], tensors[other] = tensors[other], tensors[name]
    save_file(tensors, str(swapped / "model.safetensors"), metadata={"format": "pt"})
    tokens, _ = run(swapped, prompts, tensor_parallel_size=2, enable_expert_parallel=True,
                    distributed_executor_backend="mp")
    assert tokens != ref


def test_biased_routing_breaks_equality(qwen3_moe, monkeypatch):
    path, prompts, ref = qwen3_moe
    tokens, _ = run(path, prompts)
    assert tokens == ref
    real = router.softmax_topk
    monkeypatch.setattr(router, "softmax_topk", lambda logits, k, renormalize: real(
        logits + torch.linspace(0, 0.5, logits.shape[-1]), k, renormalize))
    tokens, _ = run(path, prompts)
    assert tokens != ref
