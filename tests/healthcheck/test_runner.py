"""The healthcheck against a real multi-node Ray cluster on this machine (several raylets)."""

import os
import signal
import time

import pytest

from healthcheck.runner import HealthcheckOptions, run_healthcheck
from healthcheck.thresholds import EXPECTED_GBPS
from healthcheck.verdicts import FAIL, INFO, WARN

pytestmark = pytest.mark.slow
MiB = 1 << 20


def options(cluster, **kw):
    return HealthcheckOptions(address=cluster.address, sizes=(MiB, 16 * MiB), p2p_size=4 * MiB,
                              timeout_s=30, **kw)


def label_of(report, node_id):
    [label] = [k for k, inv in report.nodes.items() if inv.node_id == node_id]
    return label


def test_agreeing_nodes_pass_and_gloo_is_verified(local_ray, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    # Bandwidth figures are not what this test checks (test_thresholds.py does): on a rig whose
    # cores are shared with other jobs, gloo can fall below the default line and be flagged.
    expect = {kind: 1e-6 for kind in EXPECTED_GBPS}
    report = run_healthcheck(options(local_ray, model=str(tmp_path), expect=expect))
    assert len(report.nodes) == 3
    assert {v.level for v in report.verdicts} <= {INFO}, report.verdicts
    assert any("simulated cluster" in v.message for v in report.verdicts)
    [r1, r16] = report.allreduce["gloo"]
    assert (r1.size, r16.size) == (MiB, 16 * MiB) and r1.correct and r16.correct
    assert r16.busbw_gbps == pytest.approx(r16.algbw_gbps * 4 / 3)
    assert len(report.links["gloo"]) == 3 and all(x.gbps > 0 for x in report.links["gloo"])
    assert all(inv.model["present"] for inv in report.nodes.values())
    assert report.exit_code() == 0 and "nccl" not in report.allreduce  # no GPUs here


def test_deviating_node_is_named(local_ray, extra_node):
    """The #6803 and #7815 symptoms: env set on one node only, VLLM_HOST_IP != Ray's IP."""
    node = extra_node(NCCL_SOCKET_IFNAME="eth9", VLLM_HOST_IP="10.9.9.9")
    report = run_healthcheck(options(local_ray))
    odd = label_of(report, node.node_id)
    env = [v for v in report.verdicts if v.check == "env"]
    ip = [v for v in report.verdicts if v.check == "ip" and v.level == FAIL]
    assert any(v.level == WARN and v.message.startswith("NCCL_SOCKET_IFNAME differs")
               and odd in v.message for v in env), report.verdicts
    assert any(v.nodes == (odd,) and "VLLM_HOST_IP=10.9.9.9" in v.message for v in ip)
    assert report.exit_code() == 2
    assert report.allreduce["gloo"][0].correct  # the nodes can still talk


def test_unresponsive_node_is_reported_not_waited_for(local_ray, extra_node):
    node = extra_node()
    [raylet] = node.all_processes["raylet"]
    os.kill(raylet.process.pid, signal.SIGSTOP)
    start = time.monotonic()
    report = run_healthcheck(HealthcheckOptions(address=local_ray.address, sizes=(MiB,),
                                                p2p_size=MiB, timeout_s=10))
    elapsed = time.monotonic() - start
    assert elapsed < 60
    stuck = [v for v in report.verdicts if v.check == "reachable" and v.level == FAIL]
    assert stuck, report.verdicts
    assert len(report.nodes) == 3 and report.allreduce["gloo"][0].correct
    assert report.exit_code() == 2
