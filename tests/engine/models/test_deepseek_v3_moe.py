"""DeepSeek-V3's routed experts behind MLA: sigmoid-scored grouped top-k with the correction bias,
routed_scaling_factor and a shared expert, with the first layer dense. Greedy tokens equal HF
transformers' in fp32 on one rank, with experts sliced over TP=2 and split whole over EP=2 (mp,
gloo). Routing without the correction bias breaks the equality, so the tests see it."""

import pytest

import engine.layers.router as router
from engine import LLM, SamplingParams
from tests.engine.oracle import hf_greedy, make_prompts
from tests.engine.tiny_models import make_deepseek_v3

NEW = 10


@pytest.fixture(scope="module")
def deepseek_moe(tmp_path_factory):
    path = make_deepseek_v3(tmp_path_factory.mktemp("ds_moe"), yarn=True, moe=True)
    prompts = make_prompts(path, (3, 17, 40, 9))
    return path, prompts, hf_greedy(path, prompts, NEW)


def run(path, prompts, **kw):
    llm = LLM(str(path), kv_cache_space_gib=0.05, dtype="float32", **kw)
    try:
        outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=NEW,
                                                    ignore_eos=True), use_tqdm=False)
        return [o.outputs[0].token_ids for o in outs]
    finally:
        llm.shutdown()


def test_uni_matches_hf(deepseek_moe):
    path, prompts, ref = deepseek_moe
    assert run(path, prompts) == ref


@pytest.mark.parametrize("ep", [False, True], ids=["tp2-sliced", "ep2"])
def test_tp2_and_ep2_match_hf(deepseek_moe, ep):
    path, prompts, ref = deepseek_moe
    assert run(path, prompts, tensor_parallel_size=2, enable_expert_parallel=ep,
               distributed_executor_backend="mp") == ref


def test_routing_without_the_correction_bias_breaks_equality(deepseek_moe, monkeypatch):
    path, prompts, ref = deepseek_moe
    grouped = router.grouped_topk

    def no_bias(logits, top_k, renormalize, bias, *args):
        return grouped(logits, top_k, renormalize, bias * 0 if bias is not None else None, *args)

    monkeypatch.setattr(router, "grouped_topk", no_bias)
    assert run(path, prompts) != ref
