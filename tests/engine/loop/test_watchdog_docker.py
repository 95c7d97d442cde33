"""Faults beyond clean crashes, across the simulated hosts (marker `docker`): PP=3 on the ray
backend, one stage per container, 4 streaming clients in flight during every fault. One served
cluster for all of them, in order; each starts from the full layout serving again.

- a bad `--serve-args`: refused in one line before anything is stored; the service is untouched;
- a worker's engine actors SIGSTOPped for 60 s (or until Ray killed them): /health 503 within the
  step deadline, the streams fail with the reason, the engine rebuilds to the same answer;
- a worker's network disconnected for 5 s (shorter than the 10 s partition grace): no failure,
  no rebuild; for 60 s: the streams fail with a clear error, the service comes back;
- a worker stopped for good: after --replan-after the service serves degraded (PP=2, the same
  greedy answer), and grows back to PP=3 when the worker is started again;
- the Ray token file removed on the host, then the worker crashed: Docker cannot restart it,
  `cluster status` names the file, /health says 503 + Retry-After; restored, it serves again.
Every fault: no request hangs, no HTTP 500, every failure has a message (503s a Retry-After).
The faults and the measuring are bench/chaos.py's, which `onenode bench chaos` times.
"""

import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from bench import chaos
from bench.chaos_load import health, serving_degraded, serving_full, wait_health
from cluster import backend
from cluster.supervisor import SERVE_CONFIG
from tests.engine.entrypoints.test_recovery_docker import HF, IMAGE, chat

pytestmark = [pytest.mark.docker, pytest.mark.slow]
STEP_TIMEOUT_S = 10
REPLAN_AFTER_S = 20
BACK_S = 240  # a rebuild on the loaded 2-core rig, with room


@pytest.fixture(scope="module")
def served(docker_required, cluster_hf_home):
    from cluster.local import down, up
    from onenode.net import free_port

    name, port = f"onwd-{uuid.uuid4().hex[:6]}", free_port("127.0.0.1")
    with tempfile.TemporaryDirectory(prefix="onwd-") as tmp:
        token = Path(tmp) / "ray_token"  # this cluster's own: the test deletes it
        try:
            info = up(3, name=name, image=IMAGE, hf_home=cluster_hf_home, cpus_per_node=1,
                      object_store_memory="128m", api_port=port, token_file=str(token))
            proc = _cluster_serve(name, port, *chaos.serve_settings(STEP_TIMEOUT_S,
                                                                    REPLAN_AFTER_S))
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
            yield chaos.Cluster(info, token), chat(port)
        finally:
            down(name)


def _cluster_serve(name: str, port: int, *extra: str):
    from engine.demo_model import MODEL_DIR

    cmd = [sys.executable, "-m", "onenode.cli", "cluster", "serve", f"{HF}/{MODEL_DIR}",
           "--name", name, "--port", str(port), "--detach", *chaos.SERVE_ARGS, *extra]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600)


def assert_clean(row: dict) -> None:
    assert row["hung"] == 0 and row["http_500"] == 0, row
    assert row["unclear"] == [] and row["health_503_without_retry_after"] == 0, row


def restarts(port: int) -> float:
    import urllib.request

    from tests.engine.entrypoints.conftest import metric

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return metric(text, "onenode_engine_restarts_total")


def full(cl) -> None:
    wait_health(cl.port, serving_full, BACK_S, "serving the full layout")


def test_bad_serve_args_are_refused_in_one_line_and_the_service_is_untouched(served):
    cl, _ = served
    full(cl)
    stored = backend.exec_in(backend.client(), cl.info.head, ["cat", SERVE_CONFIG])[1]
    proc = _cluster_serve(cl.info.name, cl.port, "--no-such-flag", "1")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert "--no-such-flag" in proc.stderr and "nothing was stored" in proc.stderr, proc.stderr
    assert backend.exec_in(backend.client(), cl.info.head, ["cat", SERVE_CONFIG])[1] == stored
    assert serving_full(*health(cl.port))


def test_sigstopped_engine_actors_turn_health_503_and_heal(served):
    cl, answer = served
    full(cl)
    row = chaos.measure(cl, lambda: chaos.sigstop(cl, 60), lambda: full(cl))
    assert_clean(row)
    # The deadline is at least STEP_TIMEOUT_S; 4 x the slowest measured step may add a few.
    assert row["detect_s"] is not None and row["detect_s"] < STEP_TIMEOUT_S + 15, row
    assert any("did not return within" in e for e in row["errors"]), row
    assert chat(cl.port) == answer


def test_five_second_network_blip_fails_nothing_and_rebuilds_nothing(served):
    cl, _ = served
    full(cl)
    before = restarts(cl.port)
    row = chaos.measure(cl, lambda: chaos.disconnect(cl, 5), lambda: time.sleep(5))
    assert row["failed"] == 0 and row["detect_s"] is None and row["completed"] > 0, row
    assert_clean(row)
    assert restarts(cl.port) == before


def test_sixty_second_partition_fails_clearly_and_comes_back(served):
    cl, answer = served
    full(cl)
    row = chaos.measure(cl, lambda: chaos.disconnect(cl, 60), lambda: full(cl))
    assert_clean(row)
    assert row["detect_s"] is not None and row["detect_s"] < 30, row  # grace 10 s + a step
    assert chat(cl.port) == answer


def test_worker_stopped_for_good_serves_degraded_then_grows_back(served):
    cl, answer = served
    full(cl)
    row = chaos.measure(cl, lambda: chaos.stop_worker(cl), lambda: wait_health(
        cl.port, serving_degraded, REPLAN_AFTER_S + BACK_S, "degraded"))
    assert_clean(row)
    assert row["detect_s"] is not None and row["detect_s"] < 20, row
    _, body = health(cl.port)
    assert body["layout"].startswith("TP=1 x PP=2 instead of TP=1 x PP=3"), body
    assert chat(cl.port) == answer  # PP=2 gives the same greedy tokens
    status = subprocess.run([sys.executable, "-m", "onenode.cli", "cluster", "status", "--name",
                             cl.info.name, "--json"], check=True, capture_output=True, text=True,
                            timeout=120)
    rows = {r["name"]: r for r in json.loads(status.stdout)}
    assert rows[cl.info.head]["serving"].startswith("serving degraded: TP=1 x PP=2"), rows
    chaos.start_worker(cl)
    full(cl)
    assert chat(cl.port) == answer


def test_token_file_removed_then_crash_is_named_and_healed_once_restored(served):
    cl, answer = served
    full(cl)
    box = {}

    def named_and_refused():
        wait_health(cl.port, lambda c, b: c == 503 and b.get("retry_after"), 30, "503")
        deadline = time.monotonic() + 30
        while not any(str(cl.token) in m for m in chaos.missing_files(cl)):
            assert time.monotonic() < deadline, "cluster status does not name the token file"
            time.sleep(1)
        assert backend.get(backend.client(), cl.worker()).status != "running"

    row = chaos.measure(cl, lambda: box.update(token=chaos.remove_token_then_crash(cl)),
                        named_and_refused)
    chaos.restore_token(cl, box["token"])
    assert_clean(row)
    full(cl)
    assert chat(cl.port) == answer
