"""The OpenAI-compatible server, driven by the official `openai` client over real HTTP."""

import asyncio
import time

import httpx
import openai
import pytest

from engine.tokenizer import apply_chat_template
from tests.engine.entrypoints.conftest import metric

# The tiny checkpoint's tokenizer is word-level over "w3" .. "w511".
PROMPT = "w17 w42 w99 w7 w300"
CHAT = [{"role": "user", "content": "w5 w6 w7"}]


@pytest.fixture()
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0, timeout=60)


def test_models_lists_the_served_name(client, server):
    models = client.models.list()
    assert [m.id for m in models.data] == [server.name]


def test_completion_usage_equals_tokenizer_counts(client, server):
    out = client.completions.create(model=server.name, prompt=PROMPT, max_tokens=7,
                                    temperature=0, extra_body={"ignore_eos": True})
    choice = out.choices[0]
    assert choice.finish_reason == "length"
    assert out.usage.prompt_tokens == len(server.tokenizer.encode(PROMPT))
    assert out.usage.completion_tokens == 7
    assert out.usage.total_tokens == out.usage.prompt_tokens + 7


def test_greedy_completion_equals_llm_generate(client, server, reference):
    out = client.completions.create(model=server.name, prompt=PROMPT, max_tokens=12,
                                    temperature=0)
    want = reference.generate(PROMPT, max_tokens=12)
    assert out.choices[0].text == want.text
    assert out.usage.completion_tokens == len(want.token_ids)


def test_greedy_chat_equals_llm_chat(client, server, reference):
    out = client.chat.completions.create(model=server.name, messages=CHAT, max_tokens=12,
                                         temperature=0)
    want = reference.chat(CHAT, max_tokens=12)
    assert out.usage.prompt_tokens == len(apply_chat_template(server.tokenizer, CHAT))
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].message.content == want.text
    assert out.usage.completion_tokens == len(want.token_ids)


def test_streaming_completion_equals_non_streaming(client, server):
    kw = dict(model=server.name, prompt=PROMPT, max_tokens=10, temperature=0)
    whole = client.completions.create(**kw)
    parts, usage, finish = [], None, None
    for chunk in client.completions.create(**kw, stream=True,
                                           stream_options={"include_usage": True}):
        usage = chunk.usage or usage
        for c in chunk.choices:
            parts.append(c.text)
            finish = c.finish_reason or finish
    assert "".join(parts) == whole.choices[0].text
    assert finish == whole.choices[0].finish_reason
    assert usage.model_dump() == whole.usage.model_dump()


def test_streaming_chat_equals_non_streaming(client, server):
    kw = dict(model=server.name, messages=CHAT, max_tokens=10, temperature=0)
    whole = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(**kw, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.delta.content or "" for ch in chunks for c in ch.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert all(ch.usage is None for ch in chunks)  # only with stream_options.include_usage


def test_n2_returns_two_choices_streamed_and_not(client, server):
    kw = dict(model=server.name, prompt=PROMPT, max_tokens=6, temperature=1.0, seed=3, n=2,
              extra_body={"ignore_eos": True})
    out = client.completions.create(**kw)
    assert sorted(c.index for c in out.choices) == [0, 1]
    assert out.usage.completion_tokens == 12
    texts = {0: "", 1: ""}
    for chunk in client.completions.create(**kw, stream=True):
        for c in chunk.choices:
            texts[c.index] += c.text
    assert texts == {c.index: c.text for c in out.choices}


def test_several_prompts_in_one_completion_request(client, server):
    out = client.completions.create(model=server.name, prompt=[PROMPT, "w5 w6"], n=2,
                                    max_tokens=3, temperature=0, extra_body={"ignore_eos": True})
    assert sorted(c.index for c in out.choices) == [0, 1, 2, 3]
    by_index = {c.index: c.text for c in out.choices}
    assert by_index[0] == by_index[1] and by_index[2] == by_index[3]  # greedy
    assert out.usage.prompt_tokens == len(server.tokenizer.encode(PROMPT)) + 2
    assert out.usage.completion_tokens == 12


def test_stop_string_cuts_the_text_streamed_and_not(client, server):
    kw = dict(model=server.name, prompt=PROMPT, max_tokens=16, temperature=0,
              extra_body={"ignore_eos": True})
    full = client.completions.create(**kw).choices[0].text
    stop = full[len(full) // 2:len(full) // 2 + 2]
    assert stop.strip(), f"no usable stop string in {full!r}"
    out = client.completions.create(**kw, stop=[stop])
    want = full[:full.find(stop)]
    assert out.choices[0].text == want
    assert out.choices[0].finish_reason == "stop"
    streamed = "".join(c.text for ch in client.completions.create(**kw, stop=stop, stream=True)
                       for c in ch.choices)
    assert streamed == want  # never a piece of the stop string


def test_seed_reproducibility(client, server):
    kw = dict(model=server.name, prompt=PROMPT, max_tokens=12, temperature=1.0,
              extra_body={"ignore_eos": True})
    a = client.completions.create(**kw, seed=1234).choices[0].text
    b = client.completions.create(**kw, seed=1234).choices[0].text
    c = client.completions.create(**kw, seed=4321).choices[0].text
    assert a == b
    assert a != c


def test_logprobs(client, server):
    out = client.completions.create(model=server.name, prompt=PROMPT, max_tokens=4,
                                    temperature=0, logprobs=2, extra_body={"ignore_eos": True})
    lp = out.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 4
    assert "".join(lp.tokens) == out.choices[0].text
    assert all(v <= 0 for v in lp.token_logprobs)
    chat = client.chat.completions.create(model=server.name, messages=CHAT, max_tokens=4,
                                          temperature=0, logprobs=True, top_logprobs=2,
                                          extra_body={"ignore_eos": True})
    content = chat.choices[0].logprobs.content
    assert len(content) == 4 and all(len(t.top_logprobs) == 2 for t in content)
    # Greedy: the sampled token is the most likely one.
    assert all(t.logprob == pytest.approx(t.top_logprobs[0].logprob) for t in content)


def test_32_concurrent_streams_complete_and_free_everything(server):
    async def one(client, i):
        stream = await client.completions.create(
            model=server.name, prompt=f"{PROMPT} {i}", max_tokens=8 + i % 5, temperature=0,
            stream=True, extra_body={"ignore_eos": True})
        n = 0
        async for chunk in stream:
            n += sum(1 for c in chunk.choices if c.text or c.finish_reason)
        return n

    async def main():
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0,
                                    timeout=120)
        try:
            return await asyncio.gather(*(one(client, i) for i in range(32)))
        finally:
            await client.close()

    counts = asyncio.run(main())
    assert all(n >= 1 for n in counts)
    text = wait_idle(server)
    assert metric(text, "onenode:num_requests_running") == 0
    assert metric(text, "onenode:kv_cache_usage_perc") == 0
    assert metric(text, "onenode:time_to_first_token_seconds_count") >= 32
    assert metric(text, "onenode:generation_tokens_total") >= 32 * 8


def test_metrics_use_vllm_names_under_onenode_prefix(client, server):
    client.completions.create(model=server.name, prompt=PROMPT, max_tokens=3, temperature=0)
    text = httpx.get(server.url + "/metrics").text
    for name in ("num_requests_running", "num_requests_waiting", "kv_cache_usage_perc",
                 "prompt_tokens_total", "generation_tokens_total", "num_preemptions_total",
                 "time_to_first_token_seconds_bucket", "inter_token_latency_seconds_bucket",
                 "e2e_request_latency_seconds_bucket", "request_success_total"):
        assert f"onenode:{name}{{" in text, name


def test_disconnect_mid_stream_aborts_and_frees_blocks(server):
    max_tokens = server.max_model_len - len(server.tokenizer.encode(PROMPT))
    before = metric(wait_idle(server), "onenode:generation_tokens_total")
    body = {"model": server.name, "prompt": PROMPT, "max_tokens": max_tokens, "temperature": 0,
            "stream": True, "ignore_eos": True}
    got = []
    with httpx.stream("POST", server.base_url + "/completions", json=body, timeout=60) as r:
        for line in r.iter_lines():
            got += [line] if line.startswith("data: ") else []
            if len(got) == 2:
                break  # leaving the block closes the connection mid-stream
    text = wait_idle(server)
    assert metric(text, "onenode:num_requests_running") == 0
    assert metric(text, "onenode:kv_cache_usage_perc") == 0
    assert metric(text, "onenode:generation_tokens_total") - before < max_tokens  # aborted


def test_tokenize_detokenize_version(server):
    r = httpx.post(server.url + "/tokenize", json={"prompt": PROMPT})
    ids = server.tokenizer.encode(PROMPT)
    assert r.status_code == 200 and r.json()["tokens"] == ids and r.json()["count"] == len(ids)
    r = httpx.post(server.url + "/detokenize", json={"tokens": ids})
    assert r.json()["prompt"] == server.tokenizer.decode(ids)
    r = httpx.post(server.url + "/tokenize", json={"messages": CHAT})
    assert r.status_code == 200 and r.json()["count"] > len(ids)
    assert httpx.get(server.url + "/version").json()["version"]
    assert httpx.get(server.url + "/health").status_code == 200


BAD = [
    ("malformed json", "/v1/completions", b"{not json", 400, None),
    ("missing prompt", "/v1/completions", {"max_tokens": 3}, 400, "prompt"),
    ("missing messages", "/v1/chat/completions", {"max_tokens": 3}, 400, "messages"),
    ("temperature", "/v1/completions", {"prompt": "a", "temperature": -1}, 400, "temperature"),
    ("top_p", "/v1/completions", {"prompt": "a", "top_p": 0}, 400, "top_p"),
    ("top_k", "/v1/completions", {"prompt": "a", "top_k": 0}, 400, "top_k"),
    ("n", "/v1/completions", {"prompt": "a", "n": 0}, 400, "n"),
    ("max_tokens", "/v1/completions", {"prompt": "a", "max_tokens": 0}, 400, "max_tokens"),
    ("logprobs", "/v1/completions", {"prompt": "a", "logprobs": 50}, 400, "logprobs"),
    ("top_logprobs", "/v1/chat/completions",
     {"messages": CHAT, "logprobs": True, "top_logprobs": 99}, 400, "top_logprobs"),
    ("token id", "/v1/completions", {"prompt": [1, 10**7]}, 400, "prompt"),
    ("unknown model", "/v1/completions", {"model": "gpt-4", "prompt": "a"}, 404, "model"),
    ("unknown route", "/v1/nope", {}, 404, None),
]


@pytest.mark.parametrize("what,path,body,status,param", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_openai_error(server, what, path, body, status, param):
    kw = {"content": body} if isinstance(body, bytes) else {"json": body}
    r = httpx.post(server.url + path, headers={"Content-Type": "application/json"}, **kw)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == param and "\n" not in err["message"] and "Traceback" not in r.text


def test_prompt_plus_max_tokens_beyond_max_model_len_names_the_numbers(server):
    n = len(server.tokenizer.encode(PROMPT))
    too_many = server.max_model_len - n + 1
    r = httpx.post(server.base_url + "/completions",
                   json={"prompt": PROMPT, "max_tokens": too_many})
    assert r.status_code == 400
    msg = r.json()["error"]["message"]
    assert str(server.max_model_len) in msg and str(n) in msg and str(too_many) in msg
    ok = httpx.post(server.base_url + "/completions",
                    json={"prompt": PROMPT, "max_tokens": too_many - 1, "temperature": 0},
                    timeout=120)
    assert ok.status_code == 200, ok.text


def wait_idle(server, timeout_s: float = 20.0) -> str:
    """The engine finishes aborts asynchronously: poll /metrics until nothing is running."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = httpx.get(server.url + "/metrics").text
        idle = (metric(text, "onenode:num_requests_running") == 0
                and metric(text, "onenode:num_requests_waiting") == 0
                and metric(text, "onenode:kv_cache_usage_perc") == 0)
        if idle or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def test_api_key_is_enforced_on_v1_but_not_on_probes(tiny_llama):
    from engine.loop.llm_engine import LLMEngine
    from tests.engine.entrypoints.conftest import engine_config, running_server

    with running_server(LLMEngine(engine_config(tiny_llama)), api_key="s3cret-key") as srv:
        wrong = openai.OpenAI(base_url=srv.base_url, api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.models.list()
        r = httpx.post(srv.base_url + "/completions", json={"prompt": "w5"})  # no key at all
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        good = openai.OpenAI(base_url=srv.base_url, api_key="s3cret-key", max_retries=0)
        assert good.completions.create(model=srv.name, prompt="w5", max_tokens=2).choices
        assert httpx.get(srv.url + "/health").status_code == 200
        assert httpx.get(srv.url + "/metrics").status_code == 200
