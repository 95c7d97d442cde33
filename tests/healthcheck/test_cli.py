"""`onenode healthcheck` and `onenode plan --cluster` as a user runs them, against a real
multi-node Ray cluster on this machine."""

import json

import pytest
import typer
from typer.testing import CliRunner

from engine.planner.cli import plan, set_live_cluster_reader
from healthcheck.cli import healthcheck
from healthcheck.runner import live_cluster_shape
from onenode.errors import ConfigError

pytestmark = pytest.mark.slow
app = typer.Typer()
app.command("healthcheck")(healthcheck)
app.command("plan")(plan)
set_live_cluster_reader(live_cluster_shape)  # as the root app (onenode/cli.py) wires it
runner = CliRunner()


def run(cluster, *args):
    return runner.invoke(app, ["healthcheck", "--address", cluster.address, "--sizes", "1M,4M",
                               "--p2p-size", "1M", "--timeout", "30", *args])


def test_json_report(local_ray):
    result = run(local_ray, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["exit_code"] == 0 and len(data["nodes"]) == 3 and data["world"] == {"gloo": 3}
    assert [r["correct"] for r in data["allreduce"]["gloo"]] == [True, True]
    assert all(r["busbw_gbps"] > 0 for r in data["allreduce"]["gloo"])
    assert len(data["p2p"]["gloo"]) == 3


def test_tables_and_strict_exit_code(local_ray):
    result = run(local_ray)
    assert result.exit_code == 0, result.output
    for title in ("nodes", "gloo all-reduce across 3 rank(s)", "point-to-point",
                  "healthcheck: 3 node(s), 0 failure(s), 0 warning(s) -> exit 0"):
        assert title in result.output
    # An impossible expectation turns into a warning: exit 0, or 1 with --strict.
    slow = ("--sizes", "16M", "--expect", "gloo=1000")  # 16M: the smallest size judged
    assert run(local_ray, *slow).exit_code == 0
    strict = run(local_ray, *slow, "--strict")
    assert strict.exit_code == 1 and "WARN" in strict.output


def test_plan_from_a_cluster_without_gpus_names_the_alternative(local_ray):
    result = runner.invoke(app, ["plan", "gpt2", "--cluster", "--address", local_ray.address])
    assert isinstance(result.exception, ConfigError)
    assert "--gpus-per-node" in str(result.exception)
