"""Server options on a live server: --chat-template, --allowed-origins (CORS), and
--generation-config defaults for the fields a request leaves unset."""

import json

import httpx
import pytest

from engine.loop.llm_engine import LLMEngine
from engine.entrypoints.server_config import ServerConfig
from tests.engine.entrypoints.conftest import engine_config, running_server
from tests.engine.tiny_models import make_llama

TEMPLATE = "{% for m in messages %}w20 {{ m['content'] }} {% endfor %}"
ORIGIN = "https://ui.example"


@pytest.fixture(scope="module")
def optioned(tmp_path_factory):
    path = make_llama(tmp_path_factory.mktemp("genconf"))
    (path / "generation_config.json").write_text(json.dumps({"temperature": 0.0}))
    server = ServerConfig(chat_template=TEMPLATE, allowed_origins=(ORIGIN,),
                          disable_log_stats=True)
    with running_server(LLMEngine(engine_config(path)), server=server) as srv:
        yield srv


def test_chat_template_flag_replaces_the_tokenizers(optioned):
    r = httpx.post(optioned.url + "/tokenize",
                   json={"messages": [{"role": "user", "content": "w7"}]})
    assert r.status_code == 200, r.text
    assert r.json()["tokens"] == [20, 7]


def test_cors_allows_only_the_given_origin(optioned):
    headers = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    r = httpx.options(optioned.base_url + "/completions", headers=headers)
    assert r.headers.get("access-control-allow-origin") == ORIGIN
    r = httpx.options(optioned.base_url + "/completions",
                      headers={**headers, "Origin": "https://evil.example"})
    assert r.headers.get("access-control-allow-origin") is None


def test_generation_config_defaults_apply_to_unset_fields(optioned):
    body = {"model": optioned.name, "prompt": "w5 w6 w7", "max_tokens": 8,
            "ignore_eos": True}
    # temperature unset: the model's generation_config.json says 0, so every answer is the same.
    texts = {httpx.post(optioned.base_url + "/completions", json=body, timeout=60)
             .json()["choices"][0]["text"] for _ in range(3)}
    assert len(texts) == 1
    greedy = httpx.post(optioned.base_url + "/completions", json={**body, "temperature": 0},
                        timeout=60).json()["choices"][0]["text"]
    assert texts == {greedy}
