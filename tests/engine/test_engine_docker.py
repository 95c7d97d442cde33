"""The engine across the simulated hosts (marker `docker`): ray backend inside the head container,
one stage per node, same tokens as one device; the served API across the containers survives
nothing silently."""

import json
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from cluster import backend
from tests.engine.oracle import hf_greedy, make_prompts
from tests.engine.tiny_models import make_llama, make_qwen3_moe

pytestmark = [pytest.mark.docker, pytest.mark.slow]
SCRIPTS = Path(__file__).parent / "docker_scripts"
HF = "/root/.cache/huggingface"


def run_in_head(cluster, hf_home: Path, *args: str) -> dict:
    shutil.copy(SCRIPTS / "ray_generate.py", hf_home / "ray_generate.py")
    code, out = backend.exec_in(backend.client(), cluster.head,
                                ["python", f"{HF}/ray_generate.py", *args],
                                env={"ONENODE_LOG_LEVEL": "WARNING"})
    assert code == 0, out[-3000:]
    line = next(x for x in out.splitlines() if x.startswith("RESULT="))
    return json.loads(line.split("=", 1)[1])


def test_smollm2_pp3_one_stage_per_node_equals_uni(docker_cluster, cluster_hf_home):
    from engine.demo_model import MODEL_DIR

    prompts = json.dumps([[504, 3575, 282, 4649, 314], [9326, 2442, 253, 655]])
    res = run_in_head(docker_cluster, cluster_hf_home, f"{HF}/{MODEL_DIR}", "1", "3", prompts,
                      "12", "--compare-uni")
    assert len(set(res["ips"])) == 3
    assert set(res["ips"]) == {ip for _, ip in docker_cluster.nodes}
    assert res["tokens"] == res["uni"]


def test_tiny_tp2_pp2_across_containers_equals_hf(docker_cluster, cluster_hf_home):
    path = make_llama(cluster_hf_home / "models" / "tiny-llama", num_layers=4)
    for p in path.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    prompts = make_prompts(path, lengths=(6, 21))
    res = run_in_head(docker_cluster, cluster_hf_home, f"{HF}/models/tiny-llama", "2", "2",
                      json.dumps(prompts), "10")
    assert res["ips"][0] == res["ips"][1] != res["ips"][2] == res["ips"][3]  # TP groups per node
    assert res["tokens"] == hf_greedy(path, prompts, 10)


@pytest.mark.parametrize("tp,pp,ep", [(3, 1, True), (1, 3, False)], ids=["ep3", "pp3"])
def test_qwen3_moe_across_containers_equals_hf(docker_cluster, cluster_hf_home, tp, pp, ep):
    """EP=3 in one stage (two whole experts per node) and PP=3 (one layer per node)."""
    path = make_qwen3_moe(cluster_hf_home / "models" / "tiny-qwen3-moe", num_attention_heads=3,
                          num_key_value_heads=1, num_experts=6)
    for p in path.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    prompts = make_prompts(path, lengths=(6, 21))
    args = ["--enable-expert-parallel", "--one-cpu-per-node"] if ep else []
    res = run_in_head(docker_cluster, cluster_hf_home, f"{HF}/models/tiny-qwen3-moe", str(tp),
                      str(pp), json.dumps(prompts), "10", *args)
    assert len(set(res["ips"])) == 3
    assert res["tokens"] == hf_greedy(path, prompts, 10)


@pytest.fixture
def served_cluster(docker_required, cluster_hf_home):
    """A separate cluster: this test kills one of its workers."""
    from cluster.local import down, up
    from onenode.net import free_port

    name = f"onserve-{uuid.uuid4().hex[:6]}"
    port = free_port("127.0.0.1")
    try:
        yield up(3, name=name, hf_home=cluster_hf_home, cpus_per_node=1,
                 object_store_memory="128m", api_port=port)
    finally:
        down(name)


def test_cluster_serve_pp3_chat_then_worker_death(served_cluster):
    from openai import OpenAI

    from engine.demo_model import MODEL_DIR

    info = served_cluster
    cmd = [sys.executable, "-m", "onenode.cli", "cluster", "serve", f"{HF}/{MODEL_DIR}",
           "--name", info.name, "--port", str(info.api_port), "--detach",
           "--pipeline-parallel-size", "3", "--max-model-len", "1024",
           "--kv-cache-space-gib", "0.25", "--served-model-name", "smol"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    client = OpenAI(base_url=f"http://127.0.0.1:{info.api_port}/v1", api_key="none",
                    max_retries=0, timeout=60)
    reply = client.chat.completions.create(
        model="smol", messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=20, temperature=0)
    assert "Paris" in reply.choices[0].message.content

    outcome = {}

    def long_stream():
        try:
            stream = client.completions.create(model="smol", prompt="Count: 1, 2, 3,",
                                               max_tokens=900, stream=True,
                                               extra_body={"ignore_eos": True})
            outcome["chunks"] = sum(1 for _ in stream)
            outcome["ended"] = "normally"
        except Exception as exc:  # noqa: BLE001 - any error ends it, which is what we want
            outcome["ended"] = type(exc).__name__

    worker = threading.Thread(target=long_stream)
    worker.start()
    time.sleep(3)
    subprocess.run(["docker", "kill", info.nodes[2][0]], check=True, capture_output=True)
    killed = time.monotonic()
    status = 200
    while status != 503 and time.monotonic() - killed < 10:
        time.sleep(0.5)
        status = _health(info.api_port)
    assert status == 503
    worker.join(timeout=30)
    assert not worker.is_alive(), "the in-flight request hung"
    assert outcome.get("ended") != "normally" or outcome.get("chunks", 900) < 900


def _health(port: int) -> int:
    import urllib.error
    import urllib.request

    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return 0
