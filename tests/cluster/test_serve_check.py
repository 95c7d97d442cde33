"""Serve flags are checked with `onenode serve`'s own parser before run_cluster --serve or cluster
serve store them: a bad flag is refused in one line, and nothing is stored or started."""

import pytest

from cluster.serve_check import check_serve_args, first_error
from onenode.errors import ConfigError
from tests.cluster.test_run_cluster import HEAD, run_cluster

TYPER_BOX = """Usage: onenode serve [OPTIONS] MODEL
Try 'onenode serve -h' for help.
╭─ Error ──────────────────────────────────────────────╮
│ Invalid value for '--max-model-len': Input should be │
│ a valid integer                                      │
╰──────────────────────────────────────────────────────╯
"""


def test_first_error_unboxes_typer_and_reads_onenode_lines():
    assert first_error(TYPER_BOX) == ("Invalid value for '--max-model-len': Input should be a "
                                      "valid integer")
    assert first_error("error: port must be 1-65535 (got 99999)\n") == \
        "port must be 1-65535 (got 99999)"


def test_the_servers_own_parser_refuses_and_accepts():
    check_serve_args(["/m", "-tp", "2", "--step-timeout", "45", "--max-model-len", "512"])
    with pytest.raises(ConfigError, match="No such option: --bogus") as info:
        check_serve_args(["/m", "--bogus", "3"])
    assert "nothing was stored" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="port must be 1-65535"):
        check_serve_args(["/m", "--port", "99999"])


def test_run_cluster_refuses_bad_serve_args_before_touching_docker(tmp_path):
    key = tmp_path / "key"
    key.write_text("sk-test")
    res = run_cluster(*HEAD, str(tmp_path), "--serve", "/m", "--serve-args", "--max-num-seq 4",
                      "--api-key-file", str(key), "--dry-run", tmp_path=tmp_path)
    assert res.returncode == 2, res.stdout
    assert res.stderr.startswith("error: `onenode serve` refuses these flags")
    assert "--max-num-seq" in res.stderr and len(res.stderr.strip().splitlines()) == 1
