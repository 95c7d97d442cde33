"""`run_cluster --worker` in the foreground, as an operator runs it (shared by the e2e tests)."""

import contextlib
import signal
import subprocess
import sys
import threading
import time

from cluster import backend


@contextlib.contextmanager
def foreground_worker(image: str, cluster, hf_home, host: int):
    """Start a worker at `host` on the cluster's subnet with `run_cluster` in the foreground.
    Yields (proc, container name, output lines so far). The process is killed and the container
    removed on the way out, whatever the test did."""
    ip = cluster.head_ip.rsplit(".", 1)[0] + f".{host}"
    name = f"{cluster.name}-worker-{ip}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cluster.run_cluster", image, cluster.head_ip, "--worker",
         str(hf_home), "--network", cluster.network, "--ip", ip, "-e", f"VLLM_HOST_IP={ip}",
         "--cluster-name", cluster.name, "--shm-size", "1g", "--num-cpus", "1",
         "--object-store-memory", "128m", "--ray-token-file", cluster.token_path],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    try:
        yield proc, name, lines
    finally:
        proc.kill()
        backend.remove(backend.client(), name, timeout=1)


def wait_for(cond, timeout: float, lines: list[str]) -> None:
    """Poll `cond` until true; on timeout fail with the command's last output."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "".join(lines)[-2000:]
        time.sleep(0.5)


def stop_with_sigterm(proc, name: str) -> None:
    """SIGTERM (Ctrl-C) ends run_cluster with status 0 and removes its container."""
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert backend.get(backend.client(), name) is None
