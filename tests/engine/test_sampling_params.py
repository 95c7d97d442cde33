"""SamplingParams and StructuredOutputsParams: vLLM's names, one ValueError naming the argument."""

import pytest

from engine import GuidedDecodingParams, SamplingParams, StructuredOutputsParams
from tests.engine.tiny_models import _byte_tokenizer


@pytest.mark.parametrize("kw,name", [
    ({"presence_penalty": 2.5}, "presence_penalty"),
    ({"frequency_penalty": -3}, "frequency_penalty"),
    ({"repetition_penalty": 0}, "repetition_penalty"),
    ({"min_tokens": -1}, "min_tokens"),
    ({"min_tokens": 20, "max_tokens": 10}, "min_tokens"),
    ({"logit_bias": {5: 200}}, "logit_bias"),
    ({"logit_bias": [1, 2]}, "logit_bias"),
    ({"allowed_token_ids": []}, "allowed_token_ids"),
    ({"bad_words": [""]}, "bad_words"),
    ({"prompt_logprobs": 1}, "prompt_logprobs"),
])
def test_bad_values_name_the_argument(kw, name):
    with pytest.raises(ValueError, match=name):
        SamplingParams(**kw)


def test_vllm_spellings_are_one_setting():
    so = StructuredOutputsParams(choice=["a", "b"])
    assert GuidedDecodingParams is StructuredOutputsParams
    p = SamplingParams(guided_decoding=so)
    assert p.structured_outputs is so and p.guided_decoding is so
    assert SamplingParams(structured_outputs=so).guided_decoding is so
    with pytest.raises(ValueError, match="not both"):
        SamplingParams(structured_outputs=so, guided_decoding=StructuredOutputsParams(regex="a"))
    with pytest.raises(ValueError, match="StructuredOutputsParams"):
        SamplingParams(structured_outputs={"choice": ["a"]})


@pytest.mark.parametrize("kw,match", [
    ({}, "exactly one"),
    ({"json": {"type": "object"}, "regex": "a+"}, "exactly one"),
    ({"choice": []}, "exactly one|non-empty"),
    ({"choice": ["a", 3]}, "choice"),
    ({"json": "{not json"}, "not valid JSON"),
    ({"json": 5}, "json must be"),
    ({"regex": "a", "backend": "magic"}, "backend"),
    ({"structural_tag": "x"}, "structural_tag"),
    ({"regex": "a", "whitespace_pattern": " "}, "whitespace_pattern"),
])
def test_structured_outputs_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        StructuredOutputsParams(**kw)


def test_from_optional_is_none_without_a_constraint():
    assert GuidedDecodingParams.from_optional(json=None, regex=None) is None
    assert GuidedDecodingParams.from_optional(regex="a+").regex == "a+"


def test_structured_key_is_stable_for_equal_schemas():
    a = StructuredOutputsParams(json={"type": "object", "required": ["x"]})
    b = StructuredOutputsParams(json={"required": ["x"], "type": "object"})
    assert a.key() == b.key() and a.kind == "json"
    assert StructuredOutputsParams(json_object=True).kind == "json_object"


def test_vocab_checks_and_bad_words_tokenized_with_and_without_space():
    p = SamplingParams(logit_bias={600: 1.0})
    with pytest.raises(ValueError, match="logit_bias has token id 600"):
        p.check_vocab(512)
    with pytest.raises(ValueError, match="allowed_token_ids"):
        SamplingParams(allowed_token_ids=[1, 512]).check_vocab(512)
    tok = _byte_tokenizer()
    p = SamplingParams(bad_words=["ab"])
    p.bind_tokenizer(tok, 512)
    assert p._bad_words_token_ids == [tok.encode("ab"), tok.encode(" ab")]
    assert len(p._bad_words_token_ids[1]) == 3
