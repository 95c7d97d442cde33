"""Check `onenode serve` flags with the server's own parser before they are stored.

`run_cluster --serve` and `onenode cluster serve` store the flags in the head, whose supervisor
re-runs the server from them after every restart: a bad flag stored there would crash-loop for
good. cluster/ never imports engine/ (an import-linter contract), so the one option list is asked
through `onenode serve --check-args` in a subprocess, which parses and validates without loading
anything.
"""

import os
import re
import subprocess
import sys

from onenode.errors import ConfigError

CHECK_TIMEOUT_S = 60.0
_BOX = re.compile(r"[│╭╮╰╯─]+")


def check_serve_args(serve_args: list[str], run=subprocess.run) -> None:
    """Raise ConfigError (one line) when `onenode serve` would refuse `serve_args`."""
    cmd = [sys.executable, "-m", "onenode.cli", "serve", *serve_args, "--check-args"]
    env = {k: v for k, v in os.environ.items() if k != "ONENODE_DEBUG"}
    try:
        proc = run(cmd, capture_output=True, text=True, timeout=CHECK_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"checking the serve flags took over {CHECK_TIMEOUT_S:.0f}s; retry, or "
                          f"run `onenode serve {' '.join(serve_args)} --check-args` to see why") \
            from None
    if proc.returncode != 0:
        raise ConfigError(f"`onenode serve` refuses these flags, so nothing was stored: "
                          f"{first_error(proc.stderr + proc.stdout)}")


def first_error(output: str) -> str:
    """The error out of Typer's boxed usage message or onenode's `error: ...` line."""
    lines = [" ".join(_BOX.sub(" ", line).split()) for line in output.splitlines()]
    lines = [line for line in lines if line and not line.lower().startswith(("usage:", "try "))]
    for line in lines:
        if line.lower().startswith("error:"):
            return line[len("error:"):].strip()
    picked = [line for line in lines if line.lower() != "error"]
    return " ".join(picked)[-300:] or "no reason given"
