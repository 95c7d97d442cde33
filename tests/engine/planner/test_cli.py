import json

import typer
from typer.testing import CliRunner

from engine.planner.cli import plan

app = typer.Typer()
app.command("plan")(plan)
app.callback()(lambda: None)  # keep `plan` a subcommand, as in the root app
runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["plan", *args])


def test_json_has_the_documented_fields():
    result = run("meta-llama/Llama-2-70b-hf", "--nodes", "2", "--gpus-per-node", "8",
                 "--gpu-memory", "16GiB", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["strategy"], data["tensor_parallel_size"], data["pipeline_parallel_size"]) == \
        ("tp+pp", 8, 2)
    for key in ("num_gpu_blocks", "max_tokens", "max_concurrency", "reason", "num_cpu_blocks"):
        assert key in data
    assert data["max_tokens"] == data["num_gpu_blocks"] * 16
    assert any("--tensor-parallel-size 8 --pipeline-parallel-size 2" in c
               for c in data["commands"])
    assert any(c.startswith("run_cluster onenode:latest HEAD_IP --worker") for c in
               data["commands"])


def test_table_output_explains_and_prints_the_serve_command():
    result = run("Llama-3-8B", "--gpus-per-node", "8", "--target-tokens", "1000000")
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "strategy: single" in out and "# GPU blocks" in out and "max concurrency" in out
    assert "onenode serve meta-llama/Meta-Llama-3-8B" in out
    assert "use 1 more GPU(s) of this cluster" in out


def test_uneven_gguf_of_the_demo_shape_prefers_pp(tmp_path, monkeypatch):
    monkeypatch.setenv("ONENODE_ALLOW_LONG_MAX_MODEL_LEN", "1")  # 65536 > its 8192 positions
    result = run("SmolLM2-135M-Instruct", "--gpus-per-node", "2", "--gpu-memory", "2GiB",
                 "--max-model-len", "65536", "--json")
    data = json.loads(result.output)
    assert (data["strategy"], data["pipeline_parallel_size"]) == ("pp", 2)
    assert "--pipeline-parallel-size 2 --max-model-len 65536" in data["commands"][0]


def test_does_not_fit_exits_1():
    result = run("Llama-2-70B", "--gpu-memory", "24GiB", "--json")
    assert result.exit_code == 1 and json.loads(result.output)["fits"] is False
