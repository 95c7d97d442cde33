"""`onenode healthcheck` on a real 3-container cluster (marker `docker`): it passes when the
nodes agree, names each deviating worker, verifies gloo and reports busbw, and reports a frozen
node within its deadline. Uses its own cluster (unique name and subnet; always removed) because
it adds and freezes nodes."""

import dataclasses
import json
import os
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import typer
from typer.testing import CliRunner

pytestmark = pytest.mark.docker
MODEL = "/root/.cache/huggingface/models/SmolLM2-135M-Instruct"
SIZES = "1M,16M"
IMAGE = os.environ.get("ONENODE_TEST_IMAGE", "onenode:latest")


@pytest.fixture(scope="module")
def hc_cluster(docker_required, cluster_hf_home):
    from cluster.local import down, up

    name = f"onhc-{uuid.uuid4().hex[:6]}"
    try:
        yield up(3, name=name, image=IMAGE, hf_home=cluster_hf_home,
                 env={"NCCL_SOCKET_IFNAME": "eth0"},
                 cpus_per_node=1, object_store_memory="128m")
    finally:
        down(name)


def healthcheck(cluster, *args: str) -> tuple[int, dict]:
    from cluster import backend

    code, out = backend.exec_in(backend.client(), cluster.head, [
        "onenode", "healthcheck", "--json", "--model", MODEL, "--sizes", SIZES, *args])
    return code, json.loads(out[out.index("{"):])


def findings(report: dict, check: str, level: str | None = None) -> list[dict]:
    return [v for v in report["verdicts"]
            if v["check"] == check and (level is None or v["level"] == level)]


def test_agreeing_cluster_passes_and_gloo_is_verified(hc_cluster):
    code, report = healthcheck(hc_cluster)
    assert code == 0 and report["exit_code"] == 0, report["verdicts"]
    assert set(report["nodes"]) == {ip for _, ip in hc_cluster.nodes}
    # Only bandwidth may warn on two shared cores; every consistency check passes.
    assert not [v for v in report["verdicts"]
                if v["level"] in ("warn", "fail") and v["check"] not in ("allreduce", "p2p")]
    assert all(n["model"]["present"] and n["model"]["fingerprint"]
               for n in report["nodes"].values())
    # the id baked in at build time, reported by every node: one value, the image's label
    ids = {n["image_id"] for n in report["nodes"].values()}
    label = subprocess.run(["docker", "inspect", "-f",
                            '{{index .Config.Labels "org.onenode.image-id"}}', IMAGE],
                           capture_output=True, text=True, timeout=60).stdout.strip()
    assert ids == {label} and label
    sizes = [(r["size"], r["correct"]) for r in report["allreduce"]["gloo"]]
    assert sizes == [(1 << 20, True), (16 << 20, True)]
    for r in report["allreduce"]["gloo"]:
        assert r["busbw_gbps"] == pytest.approx(r["algbw_gbps"] * 4 / 3) and r["busbw_gbps"] > 0
    assert len(report["p2p"]["gloo"]) == 3 and report["world"] == {"gloo": 3}


def test_cluster_healthcheck_from_the_host(hc_cluster):
    from cluster.cli import cluster_healthcheck

    app = typer.Typer()
    app.command("healthcheck")(cluster_healthcheck)
    app.callback()(lambda: None)
    result = CliRunner().invoke(app, ["healthcheck", "--name", hc_cluster.name, "--sizes", SIZES,
                                      "--model", MODEL])
    assert result.exit_code == 0, result.output
    for text in ("nodes x checks", "gloo all-reduce across 3 rank(s)", "busbw",
                 "gloo point-to-point", "0 failure(s)"):
        assert text in result.output
    for _, ip in hc_cluster.nodes:
        assert ip in result.output


def _start_worker(cluster, ip: str, hf_home, env: dict, host_ip_env: str | None = None) -> str:
    """A worker as run_cluster starts it; `host_ip_env` then overrides VLLM_HOST_IP in its
    environment only (Ray still starts on `ip`): the #7815 disagreement."""
    from cluster import backend, ready
    from cluster.local import node_args
    from cluster.node import resolve_spec, start_node

    args = node_args("worker", image=IMAGE, head_ip=cluster.head_ip, hf_home=hf_home,
                     ip=ip, name=cluster.name, env=env, cpus=1, object_store="128m",
                     ray_auth=True, token=cluster.token_path)
    if host_ip_env is None:
        return start_node(args, caller_env={})[0].name
    spec = resolve_spec(args, {})
    env_vars = {**spec.env_dict(), "VLLM_HOST_IP": host_ip_env}
    spec = dataclasses.replace(spec, env=tuple(sorted(env_vars.items())))
    c = backend.client()
    backend.start(c, spec)
    ready.wait_ready(c, spec.name, "worker", 120)
    return spec.name


def test_deviating_workers_are_named(hc_cluster, cluster_hf_home, tmp_path):
    from cluster import backend

    base = hc_cluster.head_ip.rsplit(".", 1)[0]
    ifname, no_model, bad_ip = f"{base}.40", f"{base}.41", f"{base}.42"
    empty_home = tmp_path / "empty_hf_home"
    empty_home.mkdir()
    empty_home.chmod(0o755)
    jobs = [(ifname, cluster_hf_home, {"NCCL_SOCKET_IFNAME": "eth9"}, None),
            (no_model, empty_home, {"NCCL_SOCKET_IFNAME": "eth0"}, None),
            (bad_ip, cluster_hf_home, {"NCCL_SOCKET_IFNAME": "eth0"}, f"{base}.99")]
    names = []
    try:
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(_start_worker, hc_cluster, *job) for job in jobs]
            names = [f.result() for f in futures]
        code, report = healthcheck(hc_cluster)
        assert code == 2 and len(report["nodes"]) == 6
        [env] = findings(report, "env", "warn")
        assert env["message"].startswith("NCCL_SOCKET_IFNAME differs across nodes")
        assert f"NCCL_SOCKET_IFNAME=eth9 on {ifname}" in env["message"]
        assert env["nodes"] == [ifname]
        [model] = findings(report, "model", "fail")
        assert model["nodes"] == [no_model] and f"missing on {no_model}" in model["message"]
        [ip] = findings(report, "ip", "fail")
        assert ip["nodes"] == [bad_ip]
        assert f"VLLM_HOST_IP={base}.99 but Ray knows the node as {bad_ip}" in ip["message"]
        assert all(r["correct"] for r in report["allreduce"]["gloo"])  # they can still talk
        assert report["world"] == {"gloo": 6}
    finally:
        for name in names or [f"{hc_cluster.name}-worker-{job[0]}" for job in jobs]:
            backend.remove(backend.client(), name, timeout=1)


def test_frozen_node_is_reported_within_its_deadline(hc_cluster):
    worker, worker_ip = hc_cluster.nodes[1]
    subprocess.run(["docker", "pause", worker], check=True, capture_output=True)
    try:
        start = time.monotonic()
        code, report = healthcheck(hc_cluster, "--timeout", "10", "--sizes", "1M")
        elapsed = time.monotonic() - start
    finally:
        subprocess.run(["docker", "unpause", worker], capture_output=True)
    assert code == 2 and elapsed < 90
    stuck = findings(report, "reachable", "fail")
    assert any(worker_ip in v["nodes"] or worker_ip in v["message"] for v in stuck), stuck
    assert report["allreduce"]["gloo"][0]["correct"]  # the other nodes were still tested
