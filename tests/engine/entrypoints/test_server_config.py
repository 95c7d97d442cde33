"""`onenode serve` flags: derived from EngineConfig + ServerConfig, vLLM names, one-line errors."""

import pytest
import typer
from typer.testing import CliRunner

from engine.entrypoints import api_server
from engine.entrypoints.serve_cli import serve
from engine.entrypoints.server_config import ServerConfig
from onenode.errors import ConfigError

app = typer.Typer()
app.command("serve")(serve)
app.callback()(lambda: None)


@pytest.fixture
def parsed(monkeypatch):
    got = {}
    monkeypatch.setattr(api_server, "run_server", lambda e, s: got.update(engine=e, server=s))
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    monkeypatch.delenv("ONENODE_API_KEY", raising=False)

    def run(*args, env=None):
        got.clear()
        result = CliRunner().invoke(app, ["serve", "/models/m", *args], env=env)
        return result, got

    return run


def test_a_vllm_command_line_parses_unchanged(parsed):
    result, got = parsed(
        "-tp", "2", "--pipeline-parallel-size", "3", "--max-model-len", "4096",
        "--gpu-memory-utilization", "0.85", "--enforce-eager", "--seed", "1", "--revision", "main",
        "--generation-config", "vllm", "--max-logprobs", "10", "--max-num-batched-tokens", "8192",
        "--api-key", "a", "--api-key", "b", "--allowed-origins", "https://x.example",
        "--root-path", "/llm", "--uvicorn-log-level", "warning", "--disable-log-requests",
        "--disable-log-stats", "--max-waiting-requests", "10", "--trust-remote-code",
        "--no-trust-remote-code", "--swap-space", "8", "--enable-chunked-prefill",
        "--disable-custom-all-reduce", "--port", "9000")
    assert result.exit_code == 0, result.output
    e, s = got["engine"], got["server"]
    assert (e.tensor_parallel_size, e.pipeline_parallel_size, e.max_model_len, e.enforce_eager,
            e.revision, e.generation_config, e.max_logprobs, e.max_num_batched_tokens) == \
        (2, 3, 4096, True, "main", "vllm", 10, 8192)
    assert (s.api_key, s.allowed_origins, s.root_path, s.uvicorn_log_level, s.port,
            s.disable_log_stats, s.max_waiting_requests) == \
        (("a", "b"), ("https://x.example",), "/llm", "warning", 9000, True, 10)


def test_api_key_from_vllm_env_and_onenode_env(parsed):
    _, got = parsed(env={"VLLM_API_KEY": "from-vllm"})
    assert got["server"].api_key == ("from-vllm",)
    _, got = parsed(env={"ONENODE_API_KEY": "from-onenode"})
    assert got["server"].api_key == ("from-onenode",)


@pytest.mark.parametrize("args,message", [
    (("--port", "99999"), "port must be 1-65535"),
    (("--max-num-seqs", "0"), "max_num_seqs must be >= 1"),
    (("--max-waiting-requests", "0"), "max_waiting_requests must be >= 1"),
    (("--max-logprobs", "50"), "max_logprobs must be 0-20"),
    (("--trust-remote-code",), "trust_remote_code=True is not supported"),
    (("--quantization", "awq"), "quantization='awq' is not supported by onenode yet"),
    (("--uvicorn-log-level", "loud"), "uvicorn_log_level='loud'"),
])
def test_bad_flags_are_one_line_errors(parsed, args, message):
    result, got = parsed(*args)
    assert isinstance(result.exception, ConfigError), result.output
    assert message in str(result.exception) and "\n" not in str(result.exception)
    assert not got, "nothing may start on a bad flag"


def test_chat_template_is_a_file_or_inline(tmp_path):
    path = tmp_path / "t.jinja"
    path.write_text("{{ messages }}")
    assert ServerConfig(chat_template=str(path)).chat_template_text() == "{{ messages }}"
    assert ServerConfig(chat_template="{{ x }}").chat_template_text() == "{{ x }}"
    with pytest.raises(ConfigError, match="neither a file nor a Jinja template"):
        ServerConfig(chat_template="missing.jinja").chat_template_text()


def test_the_readme_vllm_command_line_parses(parsed):
    import re
    import shlex
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    block = re.search(r"## A vLLM command line, unchanged\n\n```bash\n(.*?)```", readme, re.DOTALL)
    words = shlex.split(block.group(1).replace("\\\n", " "))
    env = dict(w.split("=", 1) for w in words[:words.index("onenode")])
    result, got = parsed(*words[words.index("serve") + 2:], env=env)
    assert result.exit_code == 0, result.output
    assert got["server"].api_key == (env["VLLM_API_KEY"],)


def test_api_keys_stay_out_of_the_repr():
    assert "k-secret" not in repr(ServerConfig(api_key=("k-secret",)))
