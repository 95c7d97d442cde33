"""The vLLM peer's pure parts: environment, command lines, the workload handed over, the
per-round ratios, the HF and onenode sampling settings, and `bench serve`'s report arithmetic."""

from pathlib import Path

import pytest

from bench import vllm_peer, vllm_serve
from bench.throughput import hf_generate_kwargs, peer_summary, sampling_params_kwargs
from bench.workload import BenchRequest
from onenode.errors import ConfigError


def test_peer_env_gives_vllm_every_core_and_a_fixed_cache():
    env = vllm_peer.peer_env(2, base={"PATH": "/bin"})
    assert env == {"PATH": "/bin", "VLLM_CPU_OMP_THREADS_BIND": "0-1",
                   "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "VLLM_CPU_KVCACHE_SPACE": "2",
                   "OMP_NUM_THREADS": "2"}


def test_missing_venv_names_the_make_target(tmp_path):
    with pytest.raises(ConfigError, match="make bench-peers"):
        vllm_peer.peer_python(tmp_path / "none")


def test_offline_command_and_workload():
    cmd = vllm_peer.offline_command(Path("py"), Path("hf"), Path("w.json"), Path("r.json"),
                                    "float32")
    assert cmd[:2] == ["py", str(vllm_peer.OFFLINE_SCRIPT)] and vllm_peer.OFFLINE_SCRIPT.exists()
    assert cmd[2:] == ["--model", "hf", "--workload", "w.json", "--result", "r.json",
                       "--dtype", "float32"]
    work = vllm_peer.workload_json([BenchRequest((5, 6), 3)], [BenchRequest((7,), 2)],
                                   {"temperature": 0.0}, 1)
    assert work == {"requests": [[[5, 6], 3]], "single": [[[7], 2]],
                    "sampling": {"temperature": 0.0}, "seed": 1}


def test_offline_script_has_a_main_guard():
    assert 'if __name__ == "__main__":' in vllm_peer.OFFLINE_SCRIPT.read_text()


def test_per_round_ratios():
    runs = [{"batched_s": 10, "single_s": 2, "hf_batched64_s": 15, "vllm_batched_s": 8,
             "vllm_single_s": 3},
            {"batched_s": 20, "single_s": 2, "hf_batched64_s": 20, "vllm_batched_s": 30,
             "vllm_single_s": 2}]
    res = peer_summary(runs, out_toks=100)
    assert res["batched_ratio_vllm"]["all"] == [0.8, 1.5]
    assert res["batched_ratio_hf64"]["all"] == [1.5, 1.0]
    assert res["single_stream_ratio_vllm"]["median"] == 1.25
    assert res["vllm_output_tok_s"]["all"] == [12.5, 100 / 30]
    assert peer_summary([{"batched_s": 1}], 10) == {}


def test_sampling_settings_per_side():
    assert sampling_params_kwargs({"temperature": 0.0}, 5, 3) == \
        {"temperature": 0.0, "max_tokens": 5, "ignore_eos": True}
    assert sampling_params_kwargs({"temperature": 0.7}, 5, 3)["seed"] == 3
    assert hf_generate_kwargs({"temperature": 0.0, "repetition_penalty": 1.2,
                               "frequency_penalty": 0.5}) == \
        {"do_sample": False, "repetition_penalty": 1.2}
    assert hf_generate_kwargs({"temperature": 0.7, "top_k": 50})["do_sample"]


def test_bench_serve_command_line():
    load = vllm_serve.ServeLoad()
    cmd = vllm_serve.bench_serve_command(Path("py"), Path("w.py"), "http://127.0.0.1:1", "m",
                                         Path("hf"), load, 8, Path("/tmp/x/c8.json"))
    assert cmd[:4] == ["py", "w.py", "bench", "serve"]
    flags = dict(zip(cmd[4::1], cmd[5::1]))
    assert flags["--max-concurrency"] == "8" and flags["--random-input-len"] == "256"
    assert flags["--endpoint"] == "/v1/completions" and flags["--result-filename"] == "c8.json"
    assert flags["--seed"] == "8", "each level its own prompts: none from the last one's cache"
    assert "--ignore-eos" in cmd and load.concurrency == (1, 8, 32)
    server = vllm_serve.vllm_server_command(Path("py"), Path("hf"), 9, "float32", 2048)
    assert server[:3] == ["py", "-m", "vllm.entrypoints.openai.api_server"]
    assert "onenode.cli" in vllm_serve.onenode_server_command("m", 9, "float32", 2048)


def test_the_wrapper_answers_for_the_vllm_distribution():
    assert '"0.32.0" if name == "vllm"' in vllm_serve.WRAPPER
    assert "vllm.entrypoints.cli.main import main; main()" in vllm_serve.WRAPPER


def test_served_report_arithmetic():
    raw = {"completed": 64, "output_throughput": 110.0, "mean_ttft_ms": 12300.0,
           "p50_itl_ms": 186.0, "p99_itl_ms": 411.0, "other": 1}
    ours = vllm_serve.summarize(raw)
    theirs = dict(ours, output_tok_s=169.0, mean_ttft_ms=5400.0, p99_itl_ms=2200.0)
    r = vllm_serve.ratios(ours, theirs)
    assert r["throughput"] == pytest.approx(110 / 169)
    assert r["mean_ttft"] == pytest.approx(12300 / 5400) and r["p99_itl"] < 1
