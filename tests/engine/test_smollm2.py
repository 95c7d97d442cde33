"""The embedded SmolLM2-135M-Instruct GGUF: HF's tokens, a real chat answer, and the
9-heads TP rule (TP=2 refused with the PP suggestion; TP=3 and PP=3 equal uni)."""

import pytest

from engine import LLM, SamplingParams
from onenode.errors import ConfigError
from tests.engine.oracle import hf_greedy

pytestmark = pytest.mark.slow
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time",
           "1, 2, 3, 4,", "Water boils at"]
GREEDY = SamplingParams(temperature=0, max_tokens=32, ignore_eos=True)


@pytest.fixture(scope="module")
def smol(demo_model_dir):
    llm = LLM(str(demo_model_dir), kv_cache_space_gib=0.5, max_model_len=2048)
    yield llm
    llm.shutdown()


@pytest.fixture(scope="module")
def uni_tokens(smol):
    ids = [smol.get_tokenizer().encode(p) for p in PROMPTS]
    return ids, [o.outputs[0].token_ids for o in smol.generate(ids, GREEDY, use_tqdm=False)]


def test_gguf_tokens_equal_transformers(demo_model_dir, uni_tokens):
    from engine.demo_model import GGUF_NAME

    ids, ours = uni_tokens
    assert ours == hf_greedy(demo_model_dir, ids, 32, gguf_file=GGUF_NAME)


def test_chat_answer_mentions_paris(smol):
    out = smol.chat([{"role": "user", "content": "What is the capital of France?"}],
                    SamplingParams(temperature=0, max_tokens=32), use_tqdm=False)
    assert "Paris" in out[0].outputs[0].text
    assert out[0].outputs[0].finish_reason in ("stop", "length")


def test_tp2_is_refused_with_the_pp_suggestion(demo_model_dir):
    with pytest.raises(ConfigError) as err:
        LLM(str(demo_model_dir), tensor_parallel_size=2)
    msg = str(err.value)
    assert "9 attention heads are not divisible by tensor_parallel_size=2" in msg
    assert "--pipeline-parallel-size 2" in msg


@pytest.mark.parametrize("kw", [{"tensor_parallel_size": 3}, {"pipeline_parallel_size": 3}],
                         ids=["tp3", "pp3"])
def test_tp3_and_pp3_equal_uni(demo_model_dir, uni_tokens, kw):
    ids, ref = uni_tokens
    llm = LLM(str(demo_model_dir), kv_cache_space_gib=0.5, max_model_len=2048,
              distributed_executor_backend="mp", **kw)
    try:
        outs = llm.generate(ids, GREEDY, use_tqdm=False)
    finally:
        llm.shutdown()
    assert [o.outputs[0].token_ids for o in outs] == ref


def test_json_schema_answer_from_a_real_model_validates(smol):
    """xgrammar with the GGUF's byte-level BPE tokenizer (49k tokens) and a real chat answer."""
    import json

    import jsonschema

    from engine import StructuredOutputsParams

    schema = {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 40},
        "country": {"type": "string", "maxLength": 40},
        "population_millions": {"type": "number"}},
        "required": ["city", "country", "population_millions"]}
    params = SamplingParams(temperature=0, max_tokens=80,
                            structured_outputs=StructuredOutputsParams(json=schema))
    out = smol.chat([{"role": "user", "content": "Describe Paris as JSON with city, country "
                                                  "and population_millions."}],
                    params, use_tqdm=False)[0].outputs[0]
    assert out.finish_reason == "stop", out.text
    value = json.loads(out.text)
    jsonschema.validate(value, schema)
    assert "Paris" in value["city"]
