"""Gemma 2 and Gemma 3 (engine/models/gemma2.py, gemma3.py): greedy tokens equal HF's (fp32) at
every position, uni, chunked, TP=2 and PP=2, with a 32-token sliding window that prompts of 100
and 200 tokens cross and a 20-token prompt decodes across; an image-text Gemma 3 checkpoint's
text model too. Each Gemma feature turned off in onenode breaks the equality (the final soft
cap, monotonic, cannot change a greedy token: the logprobs show it)."""

import random

import pytest
import torch

from engine import LLM, SamplingParams
from engine.layers import softcap_attention
from engine.models import gemma2, gemma3
from engine.models.llama import LlamaForCausalLM
from tests.engine.oracle import hf_greedy, hf_teacher_logits, make_prompts
from tests.engine.tiny_gemma import make_gemma2, make_gemma3, make_gemma3_multimodal
from tests.engine.tiny_models import VOCAB

NEW = 24
LENGTHS = (20, 100, 200)
BUILDERS = {"gemma2": make_gemma2, "gemma3": make_gemma3}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def case(request, tmp_path_factory):
    path = BUILDERS[request.param](tmp_path_factory.mktemp(request.param), sliding_window=32)
    prompts = make_prompts(path, LENGTHS)
    return request.param, path, prompts, hf_greedy(path, prompts, NEW)


def generate(path, prompts, logprobs=None, **kw):
    kw.setdefault("kv_cache_space_gib", None if kw.get("device") == "cuda" else 0.05)
    llm = LLM(str(path), dtype="float32", **kw)
    try:
        outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=NEW,
                                                    ignore_eos=True, logprobs=logprobs),
                            use_tqdm=False)
        return [o.outputs[0] for o in outs]
    finally:
        llm.shutdown()


def tokens(path, prompts, **kw):
    return [o.token_ids for o in generate(path, prompts, **kw)]


def test_uni_matches_hf(case):
    _, path, prompts, ref = case
    assert tokens(path, prompts) == ref


def test_chunked_prefill_matches_hf(case):
    """64-token chunks: later chunks read their window from the cache."""
    _, path, prompts, ref = case
    assert tokens(path, prompts, max_num_batched_tokens=64) == ref


@pytest.mark.parametrize("tp,pp", [(2, 1), (1, 2)])
def test_mp_matches_hf(case, tp, pp):
    _, path, prompts, ref = case
    assert tokens(path, prompts, tensor_parallel_size=tp, pipeline_parallel_size=pp,
                  distributed_executor_backend="mp") == ref


def test_logprobs_match_hf_with_the_final_soft_cap(case, monkeypatch):
    """Each token's logprob is HF's (its logits capped); without the cap it is not."""
    _, path, prompts, _ = case
    out = generate(path, prompts[:1], logprobs=0)[0]
    ref = torch.log_softmax(hf_teacher_logits(path, prompts[0], out.token_ids), dim=-1)
    want = [ref[i, t].item() for i, t in enumerate(out.token_ids)]
    got = [lp[t] for lp, t in zip(out.logprobs, out.token_ids)]
    assert got == pytest.approx(want, abs=1e-4)
    monkeypatch.setattr(gemma2.Gemma2ForCausalLM, "compute_logits",
                        LlamaForCausalLM.compute_logits)
    uncapped = generate(path, prompts[:1], logprobs=0)[0]
    assert uncapped.token_ids == out.token_ids  # the cap is monotonic
    assert max(abs(lp[t] - w) for lp, t, w in zip(uncapped.logprobs, out.token_ids, want)) > 1e-2


def test_without_embedding_scaling_the_tokens_differ(case, monkeypatch):
    _, path, prompts, ref = case
    monkeypatch.setattr(gemma2.Gemma2ForCausalLM, "embed", LlamaForCausalLM.embed)
    assert tokens(path, prompts) != ref


def test_without_attention_soft_cap_the_tokens_differ(case, monkeypatch):
    name, path, prompts, ref = case
    if name != "gemma2":
        pytest.skip("Gemma 3 has no attention soft cap")
    attend = softcap_attention.attend
    monkeypatch.setattr(softcap_attention, "attend",
                        lambda q, k, v, qf, kf, scale, cap, w: attend(q, k, v, qf, kf, scale,
                                                                      1e9, w))
    assert tokens(path, prompts) != ref


def test_without_the_window_the_tokens_differ(case, monkeypatch):
    _, path, prompts, ref = case
    init = gemma2.Gemma2Attention.__init__

    def unwindowed(self, cfg, rotary, layer):
        init(self, cfg, rotary, layer)
        self.attn.sliding_window = None

    monkeypatch.setattr(gemma2.Gemma2Attention, "__init__", unwindowed)
    assert tokens(path, prompts) != ref


def test_gemma3_with_one_rope_for_all_layers_differs(case, monkeypatch):
    """Sliding layers rotate with rope_local_base_freq, global ones with rope_theta scaled."""
    name, path, prompts, ref = case
    if name != "gemma3":
        pytest.skip("Gemma 2 has one rope")
    monkeypatch.setattr(gemma3.Gemma3ForCausalLM, "make_rotary",
                        gemma2.Gemma2ForCausalLM.make_rotary)
    assert tokens(path, prompts) != ref


def test_image_text_checkpoint_serves_its_text_model(tmp_path):
    path = make_gemma3_multimodal(tmp_path)
    rng = random.Random(0)  # text tokens only: the last three ids are the image markers
    prompts = [[rng.randrange(3, VOCAB - 3) for _ in range(n)] for n in (20, 100)]
    assert tokens(path, prompts) == hf_greedy(path, prompts, NEW)


@pytest.mark.gpu
def test_cuda_matches_hf_on_cuda(case):
    """The soft-capped path (Gemma 2) and the Triton kernel's window (Gemma 3) on CUDA."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    _, path, prompts, _ = case
    ours = tokens(path, prompts, device="cuda", gpu_memory_utilization=0.3)
    assert ours == hf_greedy(path, prompts, NEW, device="cuda")
