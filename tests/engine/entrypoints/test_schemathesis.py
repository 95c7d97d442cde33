"""Bad input found by a tool, not by hand: schemathesis generates requests from the server's own
OpenAPI schema (valid and invalid ones) against a live server on loopback. A fixed, derandomized
number of examples per operation; no 5xx, no traceback in any body, and the server is healthy
afterwards."""

import os

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from engine.loop.llm_engine import LLMEngine
from tests.engine.entrypoints.conftest import engine_config, running_server

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode

EXAMPLES = int(os.environ.get("ONENODE_FUZZ_EXAMPLES", "25"))  # more for a deeper run
KEY = "fuzz-key-0b1e"


@pytest.fixture(scope="module")
def fuzzed(tiny_llama):
    # Small max_model_len keeps each generated request short on a CPU.
    engine = LLMEngine(engine_config(tiny_llama, max_model_len=64))
    with running_server(engine, api_key=KEY) as srv:
        yield srv


def _operations(srv):
    schema = schemathesis.openapi.from_url(srv.url + "/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_from_the_schema_breaks_the_server(fuzzed, mode):
    failures = []
    operations = _operations(fuzzed)
    assert {op.path for op in operations} >= {"/v1/completions", "/v1/chat/completions"}
    with httpx.Client(timeout=60) as http:
        for op in operations:
            _fuzz(op, mode, fuzzed, failures)
        assert not failures, "\n".join(failures[:10])
        assert http.get(fuzzed.url + "/health").status_code == 200
    assert fuzzed.async_engine.alive


def _fuzz(op, mode, srv, failures: list) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case):
        # max_tokens the fuzzer picks may be huge; the server must refuse or cap it, not hang.
        response = case.call(base_url=srv.url, headers={"Authorization": f"Bearer {KEY}"},
                             timeout=60)
        text = response.text
        if response.status_code >= 500 or "Traceback" in text:
            fields = {k: v for k, v in case.body.items() if k not in ("messages", "prompt")} \
                if isinstance(case.body, dict) else case.body
            failures.append(f"{op.method.upper()} {op.path} -> {response.status_code}: "
                            f"{text[:200]} (fields {str(fields)[:300]})")

    try:
        run()
    except Unsatisfiable:  # no negative case exists for an operation without inputs
        assert mode == GenerationMode.NEGATIVE
