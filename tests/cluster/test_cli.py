"""`onenode cluster ...` flags as users read them (Typer, no Docker)."""

import re

import pytest
from typer.testing import CliRunner

from cluster.cli import cluster_app

runner = CliRunner()


def _help(command: str) -> str:
    res = runner.invoke(cluster_app, [command, "--help"], terminal_width=200,
                        env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert res.exit_code == 0, res.output
    return re.sub(r"\x1b\[[0-9;]*m", "", res.output)


def test_up_flags_read_naturally():
    text = _help("up")
    assert "--ray-auth" in text and "--no-ray-auth" in text and "--no-no-ray-auth" not in text
    assert "--api-key-file" in text


def test_serve_has_the_explicit_opt_out():
    assert "--allow-unauthenticated" in _help("serve")


def test_no_ray_auth_turns_auth_off_with_a_warning(monkeypatch):
    seen = {}

    def fake_up(*args, **kwargs):
        seen["ray_auth"] = args[8]
        raise SystemExit(0)

    monkeypatch.setattr("cluster.local.up", fake_up)
    res = runner.invoke(cluster_app, ["up", "--no-ray-auth"])
    assert seen["ray_auth"] is False and "RAY_AUTH_MODE=disabled" in res.output


@pytest.mark.parametrize("item", ["=value", "NOEQUALS"])
def test_up_env_needs_a_name(item):
    res = runner.invoke(cluster_app, ["up", "-e", item])
    assert res.exit_code == 2
