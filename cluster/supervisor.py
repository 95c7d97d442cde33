"""The node container's main process: `python -m cluster.supervisor [--wait-for HOST:PORT] --
ray start ... --block`.

Docker's restart policy restarts a container whose main process dies (SIGKILL, OOM kill,
segfault); this process is what makes the restarted node useful again by itself:
- a worker waits for the head's GCS with bounded backoff (one log line per attempt), then joins;
- on the head it keeps `onenode serve` running from the serve config stored in the container
  (SERVE_CONFIG, written by `onenode cluster serve` / `run_cluster --serve`), so the API server
  comes back when the head container does; its output goes to SERVE_LOG;
- as PID 1 it forwards SIGTERM (`docker stop`) to its children and reaps orphans.
When `ray start --block` ends (the head went away, the raylet died) this process exits with its
code, and Docker starts the container again. Stdlib only: it runs before anything else is up.
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SERVE_CONFIG = "/var/lib/onenode/serve.json"
SERVE_LOG = "/var/log/onenode/serve.log"
CONFIG_ENV = "ONENODE_SERVE_CONFIG"
# Workers usually join after the head: the engine waits for the devices it needs this long.
SERVE_ENV = {"ONENODE_RAY_WAIT_S": "600"}
# A server that ran this long before exiting is restarted at once, not after a growing delay.
HEALTHY_RUN_S = 60.0
STOP_GRACE_S = 40.0  # the server drains streams for --shutdown-timeout (30 s) before exiting


def log(msg: str) -> None:
    print(f"[onenode-supervisor] {msg}", flush=True)


def backoff_delays(first: float = 1.0, cap: float = 15.0):
    """1, 2, 4, ... seconds, never more than `cap`: bounded, so a returning head is found fast."""
    delay = first
    while True:
        yield delay
        delay = min(cap, delay * 2)


def wait_for(host: str, port: int, stopping, connect=None, sleep=None) -> bool:
    """Block until host:port accepts TCP, logging each attempt; False when asked to stop."""
    connect = connect or _tcp_ok
    sleep = sleep or (lambda s: _sleep_unless(s, stopping))
    for attempt, delay in enumerate(backoff_delays(), start=1):
        if stopping():
            return False
        if connect(host, port):
            log(f"head {host}:{port} answers (attempt {attempt}); starting ray")
            return True
        log(f"waiting for the head {host}:{port} (attempt {attempt}); next try in {delay:.0f}s")
        sleep(delay)
    return False


def _sleep_unless(seconds: float, stopping) -> None:
    # Short naps: `docker stop` must not wait out a 15 s backoff (it SIGKILLs after 10 s).
    deadline = time.monotonic() + seconds
    while not stopping() and time.monotonic() < deadline:
        time.sleep(0.2)


def _tcp_ok(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def read_serve_config(path: str = SERVE_CONFIG) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_serve_config(config: dict, path: str = SERVE_CONFIG) -> None:
    """Kept in the container's own filesystem (mode 0600: it may hold the API key), which a
    restart keeps; written atomically so the supervisor never reads half a file."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(config))
    tmp.chmod(0o600)
    tmp.replace(p)


def clear_serve_config(path: str = SERVE_CONFIG) -> None:
    Path(path).unlink(missing_ok=True)


class ServeKeeper:
    """Runs `onenode serve ARGS` while a serve config exists; restarts it with backoff when it
    exits (e.g. its recovery timed out); leaves it down once the config is removed."""

    def __init__(self, config_path: str = SERVE_CONFIG, log_path: str = SERVE_LOG):
        self.config_path, self.log_path = config_path, log_path
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.next_start = 0.0
        self.delays = backoff_delays(first=2.0, cap=30.0)

    def tick(self, now: float) -> None:
        if self.proc is not None:
            code = self.proc.poll()
            if code is None:
                return
            ran = now - self.started
            if ran >= HEALTHY_RUN_S:
                self.delays = backoff_delays(first=2.0, cap=30.0)
            delay = next(self.delays)
            log(f"onenode serve exited with code {code} after {ran:.0f}s; "
                f"restarting in {delay:.0f}s if still configured")
            self.proc, self.next_start = None, now + delay
        config = read_serve_config(self.config_path)
        if config is not None and now >= self.next_start:
            self._start(config, now)

    def _start(self, config: dict, now: float) -> None:
        Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **SERVE_ENV, **config.get("env", {})}
        with open(self.log_path, "ab", buffering=0) as out:  # the child keeps its own copy
            self.proc = subprocess.Popen(["onenode", "serve", *config["args"]], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env)
        self.started = now
        log(f"started onenode serve {config['args'][0]} (pid {self.proc.pid}); log "
            f"{self.log_path}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            _wait(self.proc, STOP_GRACE_S)


def _wait(proc: subprocess.Popen, timeout: float) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def reap_orphans(ours: set[int]) -> None:
    """PID 1 inherits every orphan (Ray's daemons when `ray start` dies); collect the dead ones
    that are not our own children (those are waited for by their Popen)."""
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return
        if info is None or info.si_pid in ours:
            return
        os.waitpid(info.si_pid, 0)


def supervise(cmd: list[str], keeper: ServeKeeper | None, stopping) -> int:
    ray = subprocess.Popen(cmd)
    while True:
        code = ray.poll()
        if code is not None or stopping():
            break
        if keeper is not None:
            keeper.tick(time.monotonic())
        ours = {ray.pid} | ({keeper.proc.pid} if keeper and keeper.proc else set())
        reap_orphans(ours)
        time.sleep(1.0)
    if keeper is not None:
        keeper.stop()
    if code is None:  # asked to stop: `ray start --block` stops Ray's daemons on SIGTERM
        ray.send_signal(signal.SIGTERM)
        _wait(ray, 20.0)
        return 0
    log(f"`{' '.join(cmd[:3])}` exited with code {code}; the container stops and Docker's "
        f"restart policy decides whether it comes back")
    return code or 1


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m cluster.supervisor")
    p.add_argument("--wait-for", help="HOST:PORT that must answer before CMD starts")
    p.add_argument("--serve", action="store_true", help="keep `onenode serve` up (head)")
    p.add_argument("--set-serve", action="store_true",
                   help=f"store the serve config from ${CONFIG_ENV} and exit")
    p.add_argument("--clear-serve", action="store_true", help="remove the serve config and exit")
    p.add_argument("cmd", nargs=argparse.REMAINDER)
    opts = p.parse_args(argv)
    opts.cmd = opts.cmd[1:] if opts.cmd[:1] == ["--"] else opts.cmd
    if not opts.cmd and not (opts.set_serve or opts.clear_serve):
        p.error("give the command to run after --")
    return opts


def main(argv: list[str] | None = None) -> int:
    opts = parse(sys.argv[1:] if argv is None else argv)
    if opts.set_serve or opts.clear_serve:
        # Through env, not argv: the config may hold the API key (argv shows in `ps`/inspect).
        if opts.set_serve:
            write_serve_config(json.loads(os.environ[CONFIG_ENV]))
        else:
            clear_serve_config()
        return 0
    stop = {"now": False}

    def on_signal(signum, frame):
        log(f"signal {signum}: stopping")
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if opts.wait_for:
        host, _, port = opts.wait_for.rpartition(":")
        if not wait_for(host, int(port), lambda: stop["now"]):
            return 0
    keeper = ServeKeeper() if opts.serve else None
    return supervise(opts.cmd, keeper, lambda: stop["now"])


if __name__ == "__main__":
    sys.exit(main())
