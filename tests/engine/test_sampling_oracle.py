"""Sampling settings through the real engine, greedy, against HF transformers' generate with the
matching logits processors: repetition penalty + bad words, min_tokens + logit bias, and the
OpenAI frequency/presence formula. Structured output survives preemption, frees its state, and
gives the same tokens with TP=3 and PP=3 (mp) as on one process."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, LogitsProcessor, LogitsProcessorList

from engine import LLM, SamplingParams, StructuredOutputsParams
from tests.engine.oracle import make_prompts
from tests.engine.tiny_models import make_llama

EOS = 2
NEW = 12


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = make_llama(tmp_path_factory.mktemp("tiny-sampling"))
    return path, make_prompts(path, lengths=(6, 15, 9))


@pytest.fixture(scope="module")
def llm(tiny):
    engine = LLM(str(tiny[0]), kv_cache_space_gib=0.02, dtype="float32", block_size=4)
    yield engine
    engine.shutdown()


class OpenAIPenalties(LogitsProcessor):
    """frequency x count + presence x seen, over generated tokens only (vLLM, OpenAI)."""

    def __init__(self, prompt_len: int, frequency: float, presence: float):
        self.prompt_len, self.frequency, self.presence = prompt_len, frequency, presence

    def __call__(self, input_ids, scores):
        out = input_ids[0, self.prompt_len:]
        counts = torch.bincount(out, minlength=scores.shape[-1])[:scores.shape[-1]].float()
        return scores - self.frequency * counts - self.presence * (counts > 0).float()


@torch.inference_mode()
def hf_generate(path, prompts, processors=None, **gen) -> list[list[int]]:
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
    outs = []
    for prompt in prompts:
        ids = torch.tensor([prompt])
        extra = {"logits_processor": LogitsProcessorList(processors(len(prompt)))} \
            if processors else {}
        gen_ids = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW,
                                 do_sample=False, pad_token_id=0, **extra, **gen)
        outs.append(gen_ids[0, len(prompt):].tolist())
    return outs


def tokens(llm, prompts, **params) -> list[list[int]]:
    outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=NEW, **params),
                        use_tqdm=False)
    return [o.outputs[0].token_ids for o in outs]


def test_repetition_penalty_and_bad_words_match_transformers(tiny, llm):
    path, prompts = tiny
    plain = tokens(llm, prompts, ignore_eos=True)
    bad = sorted({plain[0][0], plain[1][1]})  # words the plain run would have said
    ours = tokens(llm, prompts, ignore_eos=True, repetition_penalty=1.8,
                  bad_words=[f"w{t}" for t in bad] + ["w5 w6"])
    ref = hf_generate(path, prompts, repetition_penalty=1.8, eos_token_id=None,
                      bad_words_ids=[[t] for t in bad] + [[5, 6]])
    assert ours == ref and ours != plain
    assert not set(bad) & {t for out in ours for t in out}


def test_frequency_and_presence_penalties_match_the_formula(tiny, llm):
    path, prompts = tiny
    ours = tokens(llm, prompts, ignore_eos=True, frequency_penalty=0.7, presence_penalty=0.4)
    ref = hf_generate(path, prompts, lambda n: [OpenAIPenalties(n, 0.7, 0.4)], eos_token_id=None)
    assert ours == ref
    assert ours != tokens(llm, prompts, ignore_eos=True)


def test_min_tokens_holds_back_eos_like_min_new_tokens(tiny, llm):
    path, prompts = tiny
    outs = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=NEW, min_tokens=4,
                                                logit_bias={EOS: 60.0}), use_tqdm=False)
    ref = hf_generate(path, prompts, min_new_tokens=4, sequence_bias={(EOS,): 60.0},
                      eos_token_id=EOS)
    assert [o.outputs[0].token_ids for o in outs] == ref
    assert all(len(o.outputs[0].token_ids) == 5 and o.outputs[0].finish_reason == "stop"
               for o in outs)


def test_allowed_token_ids_and_guided_choice(tiny, llm):
    _, prompts = tiny
    assert all(set(out) <= {7, 8} for out in tokens(llm, prompts, ignore_eos=True,
                                                     allowed_token_ids=[7, 8]))
    # Word-level vocabulary: choices must be whole tokens (a prefix like "w3" of "w300" would be
    # a dead end no token continues).
    so = StructuredOutputsParams(choice=["w7", "w8", "w9"])
    outs = llm.generate(prompts, SamplingParams(temperature=0.9, seed=3, n=3, max_tokens=NEW,
                                                structured_outputs=so), use_tqdm=False)
    assert {c.text for o in outs for c in o.outputs} <= {"w7", "w8", "w9"}
    assert not llm.engine.structured._matchers  # freed when the sequences finished


def test_aborted_requests_free_their_matchers(llm):
    engine = llm.engine
    so = StructuredOutputsParams(choice=["w7", "w8"])
    engine.add_request("a", [5, 6, 7], SamplingParams(n=2, structured_outputs=so))
    assert len(engine.structured._matchers) == 2
    engine.step()
    engine.abort_request("a")
    assert not engine.structured._matchers
    while engine.has_unfinished_requests():
        engine.step()


def test_bad_grammar_is_refused_before_anything_is_queued(llm):
    with pytest.raises(ValueError, match="structured_outputs.grammar cannot be compiled"):
        llm.generate(["w5"], SamplingParams(structured_outputs=StructuredOutputsParams(
            grammar="root ::= nothing_defined")), use_tqdm=False)
    assert not llm.engine.requests and not llm.engine.structured._matchers


# ---- structured output with a byte-level tokenizer -----------------------------------------
SCHEMA = {"type": "object", "properties": {"id": {"type": "integer", "minimum": 0,
                                                  "maximum": 999},
                                           "tag": {"type": "string", "maxLength": 5},
                                           "ok": {"type": "boolean"}},
          "required": ["id", "tag", "ok"]}
PROMPTS = ["Give me JSON:", "Another one please", "x"]


def schema_outputs(path, **kw) -> list[str]:
    llm = LLM(str(path), dtype="float32", kv_cache_space_gib=0.05, block_size=4, **kw)
    try:
        params = SamplingParams(temperature=0, max_tokens=60,
                                structured_outputs=StructuredOutputsParams(json=SCHEMA))
        outs = llm.generate(PROMPTS, params, use_tqdm=False)
        assert not llm.engine.structured._matchers
        return [o.outputs[0].text for o in outs], llm.engine
    finally:
        llm.shutdown()


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory):
    """Heads, KV heads, MLP width and layers all divisible by 3 (TP=3, PP=3)."""
    return make_llama(tmp_path_factory.mktemp("tiny-bytes3"), num_layers=3, heads=6,
                      kv_heads=3, hidden_size=96, intermediate_size=192, tokenizer="bytes")


def test_schema_output_survives_preemption(tiny_bytes):
    import jsonschema

    ref, _ = schema_outputs(tiny_bytes)
    for text in ref:
        jsonschema.validate(json.loads(text), SCHEMA)
    tight, engine = schema_outputs(tiny_bytes, num_gpu_blocks_override=24, max_model_len=96,
                                   max_num_batched_tokens=64)
    assert engine.scheduler.num_preemptions > 0
    assert tight == ref


@pytest.mark.slow
@pytest.mark.parametrize("tp,pp", [(3, 1), (1, 3)])
def test_schema_output_is_the_same_with_tp_and_pp(tiny_bytes, tp, pp):
    ref, _ = schema_outputs(tiny_bytes)
    got, engine = schema_outputs(tiny_bytes, tensor_parallel_size=tp, pipeline_parallel_size=pp,
                                 distributed_executor_backend="mp")
    assert engine.backend == "mp"
    assert got == ref
