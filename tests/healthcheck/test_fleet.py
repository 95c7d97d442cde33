import os
import subprocess
import sys
import time
from pathlib import Path

from healthcheck.fleet import error_line
from onenode.net import free_port

REPO = str(Path(__file__).resolve().parents[2])


def test_an_address_where_nothing_listens_fails_fast_instead_of_hanging():
    """ray.init alone retries an unreachable GCS for minutes (the seed's hangs). In a fresh
    process: this one may already hold a Ray runtime from another test."""
    code = ("from onenode.errors import ClusterError\n"
            "from healthcheck.fleet import connect\n"
            "try:\n"
            f"    connect('127.0.0.1:{free_port()}')\n"
            "except ClusterError as exc:\n"
            "    print(exc)\n")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})
    assert time.monotonic() - start < 30
    message = proc.stdout.strip()
    assert "nothing answers at" in message and "onenode cluster healthcheck" in message
    assert "\n" not in message


def test_error_line_takes_the_cause_of_a_wrapped_error():
    class Wrapped(Exception):
        cause = TimeoutError("gloo\nConnection closed by peer [10.0.0.3]:1234")

    assert error_line(Wrapped("x")) == "TimeoutError: Connection closed by peer [10.0.0.3]:1234"
