"""`onenode bench recovery`: seconds from a crash to the first correct answer again, for a worker
and for the head, on a 3-node simulated cluster serving the demo model with PP=3 (image already
built). Crash = SIGKILL of the container's main process from the host (what an OOM kill does);
"correct" = the greedy chat answer equals the one from before the crash.
Targets on the 2-core rig: worker <= 60 s, head <= 120 s."""

import json
import os
import signal
import time
import urllib.error
import urllib.request
import uuid

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
TARGETS = {"worker": 60.0, "head": 120.0}


def _chat(port: int) -> str | None:
    body = json.dumps({"model": "smol", "messages": QUESTION, "max_tokens": 20,
                       "temperature": 0}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", body,
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())["choices"][0]["message"]["content"]
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return None


def _time_to_answer(port: int, answer: str, crashed: float, timeout: float) -> float | None:
    while time.monotonic() - crashed < timeout:
        if _chat(port) == answer:
            return time.monotonic() - crashed
        time.sleep(1.0)
    return None


def recovery_bench(model: str, timeout: float = 600.0, image: str = "onenode:latest") -> dict:
    # Imported here: the bench layer may use cluster, but only when this bench runs.
    from cluster import backend
    from cluster.local import down, up
    from cluster.serve import cluster_serve
    from onenode.net import free_port

    name, port = f"onbench-{uuid.uuid4().hex[:6]}", free_port("127.0.0.1")
    result = {"model": model, "image": image, "targets_s": TARGETS}
    try:
        info = up(3, name=name, image=image, cpus_per_node=1, object_store_memory="128m",
                  api_port=port)
        cluster_serve(model, ["--pipeline-parallel-size", "3", "--max-model-len", "1024",
                              "--kv-cache-space-gib", "0.25", "--served-model-name", "smol"],
                      name, port, detach=True)
        answer = _chat(port)
        c = backend.client()
        for what, container in (("worker", info.nodes[2][0]), ("head", info.head)):
            os.kill(backend.main_pid(backend.get(c, container)), signal.SIGKILL)
            crashed = time.monotonic()
            result[f"{what}_s"] = _time_to_answer(port, answer, crashed, timeout)
    finally:
        down(name)
    return result
