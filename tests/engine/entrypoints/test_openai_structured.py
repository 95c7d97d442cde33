"""Structured output, penalties and forced tool calls through the official openai client against
a live server (tiny random Llama with a byte-level tokenizer, so any text is reachable)."""

import json

import jsonschema
import openai
import pytest

from engine.loop.llm_engine import LLMEngine
from tests.engine.entrypoints.conftest import engine_config, running_server
from tests.engine.tiny_models import make_llama

pytest.importorskip("xgrammar")

SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 6},
    "ok": {"type": "boolean"},
    "size": {"enum": ["S", "M", "L"]}}, "required": ["name", "ok", "size"]}
MESSAGES = [{"role": "user", "content": "Describe a shirt as JSON."}]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    path = make_llama(tmp_path_factory.mktemp("tiny-bytes"), tokenizer="bytes")
    with running_server(LLMEngine(engine_config(path)), name="tiny-bytes") as server:
        yield server


@pytest.fixture(scope="module")
def client(srv):
    return openai.OpenAI(base_url=srv.base_url, api_key="unused", max_retries=0, timeout=60)


def chat(client, **kw):
    kw = {"model": "tiny-bytes", "messages": MESSAGES, "temperature": 0, "max_tokens": 120,
          **kw}
    return client.chat.completions.create(**kw)


def test_json_schema_reply_validates(client):
    for seed in (0, 1, 2):
        reply = chat(client, temperature=1.0, seed=seed, response_format={
            "type": "json_schema", "json_schema": {"name": "shirt", "schema": SCHEMA}})
        choice = reply.choices[0]
        assert choice.finish_reason == "stop"
        jsonschema.validate(json.loads(choice.message.content), SCHEMA)


def test_json_object_is_an_object(client):
    # A bounded schema-free object needs the model to close it; the random model's greedy
    # choice does within the budget for this prompt.
    reply = chat(client, response_format={"type": "json_object"}, max_tokens=200)
    text = reply.choices[0].message.content
    assert text.startswith("{")
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text), dict)


def test_guided_choice_regex_and_grammar(client):
    choices = ["red", "green", "blue"]
    for seed in range(4):
        reply = chat(client, temperature=1.0, seed=seed, extra_body={"guided_choice": choices})
        assert reply.choices[0].message.content in choices
    out = client.completions.create(model="tiny-bytes", prompt="code:", max_tokens=20,
                                    temperature=0, extra_body={"guided_regex": r"[A-Z]{2}-\d{3}"})
    assert len(out.choices[0].text) == 6 and out.choices[0].text[2] == "-"
    out = client.completions.create(
        model="tiny-bytes", prompt="answer:", max_tokens=20, temperature=0,
        extra_body={"guided_grammar": 'root ::= ("yes" | "no") "!"'})
    assert out.choices[0].text in ("yes!", "no!")
    out = client.completions.create(model="tiny-bytes", prompt="pick:", max_tokens=20,
                                    extra_body={"structured_outputs": {"choice": ["a", "b"]}})
    assert out.choices[0].text in ("a", "b")


def test_forced_tool_calls_come_back_as_tool_calls(client):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}},
        "required": ["city"]}}}]
    named = chat(client, tools=tools,
                 tool_choice={"type": "function", "function": {"name": "get_weather"}})
    call = named.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"] in ("Paris", "Oslo")
    required = chat(client, tools=tools, tool_choice="required", parallel_tool_calls=False)
    calls = required.choices[0].message.tool_calls
    assert len(calls) == 1 and calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments)["city"] in ("Paris", "Oslo")


@pytest.mark.parametrize("kw,param", [
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tool_choice"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": "auto"},
     "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"response_format": {"type": "json_object"}, "extra_body": {"guided_regex": "a"}},
     "guided_regex"),
    ({"extra_body": {"guided_json": {"type": "nonsense"}}}, None),
    ({"extra_body": {"guided_regex": "(unclosed"}}, None),
    ({"presence_penalty": 3.0}, "presence_penalty"),
    ({"logit_bias": {"5": 500}}, "logit_bias"),
    ({"extra_body": {"min_tokens": 500}}, "min_tokens"),
    ({"extra_body": {"prompt_logprobs": 1}}, "prompt_logprobs"),
    ({"extra_body": {"use_beam_search": True}}, "use_beam_search"),
    ({"extra_body": {"bad_words": ["  "]}}, "bad_words"),
    ({"extra_body": {"allowed_token_ids": [100000]}}, "allowed_token_ids"),
    ({"extra_body": {"chat_template_kwargs": {"enable_thinking": False}}},
     "chat_template_kwargs"),
    ({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:,"}}]}]}, "messages"),
])
def test_unsupported_or_bad_fields_are_400_not_ignored(client, kw, param):
    with pytest.raises(openai.BadRequestError) as err:
        chat(client, **kw)
    if param is not None:
        assert err.value.body["param"] == param, err.value.body


def test_penalties_min_tokens_and_bias_are_honoured(client, srv):
    base = client.completions.create(model="tiny-bytes", prompt="hello", max_tokens=12,
                                     temperature=0)
    ids = srv.tokenizer.encode(base.choices[0].text)
    penal = client.completions.create(model="tiny-bytes", prompt="hello", max_tokens=12,
                                      temperature=0, presence_penalty=2.0, frequency_penalty=2.0)
    assert penal.choices[0].text != base.choices[0].text or len(set(ids)) == len(ids)
    a = srv.tokenizer.convert_tokens_to_ids("a")
    forced = client.completions.create(model="tiny-bytes", prompt="hello", max_tokens=5,
                                       temperature=0, logit_bias={str(a): 100})
    assert forced.choices[0].text == "aaaaa"
    long = client.completions.create(model="tiny-bytes", prompt="hello", max_tokens=8,
                                     temperature=0, stop=["\n", "e", "a", "o", " "],
                                     extra_body={"min_tokens": 8})
    assert long.usage.completion_tokens == 8


def test_include_stop_str_in_output(client):
    base = client.completions.create(model="tiny-bytes", prompt="hello", max_tokens=12,
                                     temperature=0,
                                     extra_body={"guided_regex": "[a-z]{12}"}).choices[0].text
    stop = base[4:6]
    cut = client.completions.create(model="tiny-bytes", prompt="hello", max_tokens=12,
                                    temperature=0, stop=[stop],
                                    extra_body={"include_stop_str_in_output": True,
                                                "guided_regex": "[a-z]{12}"})
    assert cut.choices[0].text == base[:base.index(stop) + len(stop)]


def test_streamed_json_schema_joins_to_valid_json(client):
    stream = chat(client, stream=True, response_format={
        "type": "json_schema", "json_schema": {"name": "shirt", "schema": SCHEMA}})
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    jsonschema.validate(json.loads(text), SCHEMA)


def test_streamed_bad_grammar_is_a_400_before_the_stream(srv):
    import httpx

    body = {"model": "tiny-bytes", "prompt": "x", "stream": True, "guided_regex": "(unclosed"}
    reply = httpx.post(srv.base_url + "/completions", json=body, timeout=30)
    assert reply.status_code == 400 and "cannot be compiled" in reply.json()["error"]["message"]
