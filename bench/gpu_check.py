"""`make gpu-check`: everything a lent GPU should tell us, in one command of a few minutes.

The lent machine has torch, triton, transformers, safetensors, tokenizers, typer, pyyaml and
nvidia-ml-py, no internet, and none of Ray, FastAPI, pydantic, xgrammar or gguf; pytest comes
from `make gpu-wheels` (.gpu-wheels/, carried with the tree). It runs:
  1. the `gpu`-marked tests: the Triton kernel matrix compiled, the oracle on CUDA (fp32 exact,
     bf16 by the margin criterion; the varlen prefill's mixed batches), mp with NCCL (TP=1, and TP/PP=2 given more GPUs), NVML;
  2. `bench throughput` on CUDA in bf16 against HF on the same device, on a random model of
     SmolLM2-135M's shape (built here: nothing is downloaded);
  3. batch-1 decode as a fraction of the measured HBM bandwidth (from the same run).
It prints one table and writes gpu_check.json to $OUT (or --out). Without CUDA it says so and
exits 2.

    python -m bench.gpu_check [--out DIR] [--skip-tests] [--skip-bench]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".gpu-wheels"
NEEDS_CUDA = 2
GPU_TESTS = ["tests/engine/kernels/test_triton_decode.py", "tests/engine/test_llm_oracle.py",
             "tests/engine/test_varlen_oracle.py", "tests/engine/test_parallel_oracle.py",
             "tests/healthcheck/test_gpu.py"]
# SmolLM2-135M's shape (the demo model), with random weights: the bench needs its size, not
# its knowledge, and the lent machine cannot download it.
BENCH_SHAPE = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                   num_attention_heads=9, num_key_value_heads=3, vocab_size=49152,
                   max_position_embeddings=2048, tie_word_embeddings=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-check")))
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--skip-bench", action="store_true")
    parser.add_argument("--num-requests", type=int, default=64)
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(f"gpu-check needs a CUDA device; torch {torch.__version__} sees none here")
        return NEEDS_CUDA
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine(torch)}
    if not args.skip_tests:
        result["tests"] = run_gpu_tests(args.out)
    if not args.skip_bench:
        result["bench"] = run_bench(args.num_requests)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"JSON: {args.out / 'gpu_check.json'}")
    return 0 if result.get("tests", {}).get("ok", True) else 1


def machine(torch) -> dict:
    import triton
    import transformers

    props = torch.cuda.get_device_properties(0)
    return {"gpu": props.name, "gpus": torch.cuda.device_count(), "sms":
            props.multi_processor_count, "memory_gib": round(props.total_memory / 2**30, 1),
            "torch": torch.__version__, "cuda": torch.version.cuda, "triton": triton.__version__,
            "transformers": transformers.__version__, "python": sys.version.split()[0]}


def pytest_path() -> list[str]:
    """Extra PYTHONPATH entries that make pytest importable: none when the machine has it, else
    the wheels of `make gpu-wheels`, installed into a temporary directory."""
    try:
        import pytest  # noqa: F401

        return []
    except ImportError:
        pass
    target = Path(tempfile.mkdtemp(prefix="onenode-pytest-"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index",
                    "--find-links", str(WHEELS), "--target", str(target), "pytest",
                    "pytest-timeout"], check=True, timeout=120)
    return [str(target)]


def run_gpu_tests(out: Path) -> dict:
    junit = out / "gpu_tests.xml"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*pytest_path(), str(REPO)]))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p",
                           "no:cacheprovider", f"--junitxml={junit}", *GPU_TESTS], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=420, check=False)
    (out / "gpu_tests.log").write_text(proc.stdout + proc.stderr)
    summary = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    failed = [line for line in proc.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return {"ok": proc.returncode == 0, "summary": summary, "failed": failed[:20],
            "seconds": round(time.perf_counter() - start, 1)}


def make_bench_model(path: Path, shape: dict = BENCH_SHAPE) -> Path:
    """A random bf16 Llama of `shape` with a word-level tokenizer of its vocabulary."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**shape, torch_dtype="bfloat16"))
    model.to(torch.bfloat16).save_pretrained(str(path), safe_serialization=True)
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"w{i}": i for i in range(3, shape["vocab_size"])})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                            eos_token="</s>").save_pretrained(str(path))
    return path


BENCH_KEYS = ("onenode_output_tok_s", "hf_output_tok_s", "batched_ratio",
              "onenode_single_stream_tok_s", "hf_single_stream_tok_s", "single_stream_ratio",
              "single_stream_weight_gbs", "memory_bandwidth_gbs",
              "single_stream_memory_roofline_fraction", "roofline_fraction")


def run_bench(num_requests: int, device: str = "cuda", shape: dict = BENCH_SHAPE,
              **llm_kwargs) -> dict:
    """bench throughput in bf16, onenode against HF on `device`, and whether the Triton decode
    kernel ran (engine/layers/decode_kernel.py falls back to SDPA when it fails)."""
    from bench.throughput import throughput_bench
    from engine.layers import decode_kernel

    if device == "cuda":
        llm_kwargs.setdefault("gpu_memory_utilization", 0.5)
    with tempfile.TemporaryDirectory(prefix="onenode-bench-") as tmp:
        model = make_bench_model(Path(tmp), shape)
        res = throughput_bench(str(model), dtype="bfloat16", num_requests=num_requests,
                               device=device, **llm_kwargs)
    out = {k: res[k] for k in BENCH_KEYS if k in res}
    return out | {"model": f"random Llama, {shape['num_hidden_layers']} layers x "
                           f"{shape['hidden_size']}",
                  "decode_kernel": decode_kernel.failure(device) or "in place"}


def _num(value) -> float:
    return value["median"] if isinstance(value, dict) else value


def table(result: dict) -> str:
    rows = [(k, str(v)) for k, v in result["machine"].items()]
    if "tests" in result:
        t = result["tests"]
        rows.append(("gpu tests", f"{'ok' if t['ok'] else 'FAILED'}: {t['summary']}"))
        rows += [("  failed", line) for line in t["failed"]]
    for key, value in result.get("bench", {}).items():
        if isinstance(value, str):
            rows.append((key, value))
        elif "fraction" in key:
            rows.append((key, f"{_num(value):.1%}"))
        else:
            rows.append((key, f"{_num(value):.2f}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


if __name__ == "__main__":
    sys.exit(main())
