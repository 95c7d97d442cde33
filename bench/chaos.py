"""`onenode bench chaos`: each fault of docs/reliability.md under streaming load, on a PP=3
service across 3 simulated hosts (image already built). Per fault it records the seconds to
detect (/health stops answering a plain 200), the seconds to serve again (or degraded), and the
requests completed, failed, hung and answered 500. The same faults drive the Docker tests
(tests/engine/loop/test_watchdog_docker.py), so the bench and the tests measure one thing.

Faults: a worker's engine actors SIGSTOPped (held 60 s or until Ray killed them); its network
disconnected for 5 s and for 60 s; a worker stopped for good (then started again: grow back);
the Ray token file removed on the host, then the worker crashed (Docker cannot restart it)."""

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench.chaos_load import HealthWatch, Load, serving_degraded, serving_full, wait_health

FAULTS = ("sigstop", "blip", "partition", "lost", "token")
SERVE_ARGS = ["--pipeline-parallel-size", "3", "--max-model-len", "1024",
              "--kv-cache-space-gib", "0.25", "--served-model-name", "smol"]
STREAMING_S = 3.0  # the load runs this long before the fault, so streams are in flight


@dataclass(frozen=True)
class Cluster:
    info: object  # cluster.local.ClusterInfo
    token: Path  # this cluster's own Ray token file on the host

    @property
    def port(self) -> int:
        return self.info.api_port

    def worker(self, i: int = 2) -> str:
        return self.info.nodes[i][0]


def actor_pids(container: str) -> list[int]:
    """Host PIDs of the container's engine actors (Ray titles them ray::RayWorkerWrapper)."""
    out = subprocess.run(["docker", "top", container, "-eo", "pid,args"], check=True,
                         capture_output=True, text=True, timeout=30).stdout
    return [int(line.split()[0]) for line in out.splitlines()[1:] if "RayWorkerWrapper" in line]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def sigstop(cl: Cluster, hold_s: float = 60.0) -> None:
    """Stop the actors; SIGCONT after hold_s, or earlier once all are gone (the watchdog has Ray
    kill them: nothing is left to continue)."""
    pids = actor_pids(cl.worker())
    assert pids, "no engine actor in the worker"
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    end = time.monotonic() + hold_s
    while time.monotonic() < end and any(_alive(p) for p in pids):
        time.sleep(0.5)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def disconnect(cl: Cluster, hold_s: float, node: int = 1) -> None:
    worker, ip = cl.info.nodes[node]
    subprocess.run(["docker", "network", "disconnect", cl.info.network, worker], check=True,
                   timeout=60)
    try:
        time.sleep(hold_s)
    finally:
        subprocess.run(["docker", "network", "connect", "--ip", ip, cl.info.network, worker],
                       check=True, timeout=60)


def stop_worker(cl: Cluster) -> None:
    subprocess.run(["docker", "stop", "-t", "5", cl.worker()], check=True, capture_output=True,
                   timeout=60)


def start_worker(cl: Cluster) -> None:
    subprocess.run(["docker", "start", cl.worker()], check=True, capture_output=True, timeout=60)


def remove_token_then_crash(cl: Cluster) -> str:
    """Returns the token's content, for restore_token."""
    from cluster import backend

    content = cl.token.read_text()
    cl.token.unlink()
    os.kill(backend.main_pid(backend.get(backend.client(), cl.worker())), signal.SIGKILL)
    return content


def restore_token(cl: Cluster, content: str) -> None:
    cl.token.write_text(content)
    cl.token.chmod(0o600)
    start_worker(cl)


def missing_files(cl: Cluster) -> list[str]:
    from cluster.status import cluster_status

    return [line for r in cluster_status(cl.info.name) for line in r["missing_files"]]


def measure(cl: Cluster, inject, settle) -> dict:
    """Run `inject()` under load, then `settle()` (waits, bounded, for the expected state)."""
    load, watch = Load(cl.port).start(), HealthWatch(cl.port).start()
    try:
        time.sleep(STREAMING_S)
        start = time.monotonic()
        inject()
        settle()
        time.sleep(2 * watch.every_s)  # the watch samples the state settle() just saw
    finally:
        outcomes, samples = load.stop(), watch.stop()
    return summarize(start, outcomes, samples)


def summarize(start: float, outcomes: list, samples: list) -> dict:
    down = [(t, c, b) for t, c, b in samples if t >= start and not serving_full(c, b)]
    detect = down[0][0] - start if down else None
    back = [(t, b) for t, c, b in samples if down and t > down[0][0] and c == 200]
    failed = [o for o in outcomes if o.kind not in ("ok", "hung")]
    refused = [o for o in failed if o.kind == "http_503"]
    unclear = [o for o in failed if o.kind == "connection" or not o.detail.strip()
               or (o.kind == "http_503" and not o.retry_after)]
    return {
        "detect_s": None if detect is None else round(detect, 1),
        "serve_s": round(back[0][0] - start, 1) if back else (0.0 if not down else None),
        "served_degraded": bool(back and back[0][1].get("degraded")),
        "completed": sum(o.kind == "ok" for o in outcomes), "failed": len(failed),
        "refused_503": len(refused),
        "hung": sum(o.kind == "hung" for o in outcomes),
        "http_500": sum(o.kind.startswith("http_5") and o.kind != "http_503"
                        or "internal_server_error" in o.detail for o in outcomes),
        "unclear": [f"{o.kind}: {o.detail[:120]}" for o in unclear],
        "errors": sorted({f"{o.kind}: {o.detail[:100]}" for o in failed})[:6],
        "health_503_without_retry_after": sum(c == 503 and not b.get("retry_after")
                                              for _, c, b in samples),
    }


def run_faults(cl: Cluster, faults, replan_after_s: float, back_s: float = 300.0) -> dict:
    """Each fault in turn, restoring the full layout between them; results by fault."""
    full = lambda: wait_health(cl.port, serving_full, back_s, "serving")  # noqa: E731
    degraded = lambda: wait_health(cl.port, serving_degraded, replan_after_s + back_s,  # noqa: E731
                                   "degraded")
    rows = {}
    for fault in faults:
        full()
        if fault == "sigstop":
            rows[fault] = measure(cl, lambda: sigstop(cl), full)
        elif fault in ("blip", "partition"):
            hold = 5.0 if fault == "blip" else 60.0
            rows[fault] = measure(cl, lambda: disconnect(cl, hold), full)
        elif fault == "lost":
            rows[fault] = measure(cl, lambda: stop_worker(cl), degraded)
            started = time.monotonic()
            start_worker(cl)
            rows[fault]["grow_back_s"] = round(full() + time.monotonic() - started, 1)
        elif fault == "token":
            box = {}
            rows[fault] = measure(cl, lambda: box.update(token=remove_token_then_crash(cl)),
                                  degraded)
            rows[fault]["status_names_the_file"] = any(str(cl.token) in m
                                                       for m in missing_files(cl))
            restore_token(cl, box["token"])
    full()
    return rows


def chaos_bench(model: str, image: str, faults=FAULTS, step_timeout: float = 10.0,
                replan_after: float = 30.0) -> dict:
    import tempfile
    import uuid

    from cluster.local import down, up
    from cluster.serve import cluster_serve
    from onenode.net import free_port

    name, port = f"onchaos-{uuid.uuid4().hex[:6]}", free_port("127.0.0.1")
    settings = {"step_timeout_s": step_timeout, "replan_after_s": replan_after,
                "partition_grace_s": 10.0, "shutdown_timeout_s": 5.0}
    with tempfile.TemporaryDirectory(prefix="onchaos-") as tmp:
        token = Path(tmp) / "ray_token"
        try:
            info = up(3, name=name, image=image, cpus_per_node=1, object_store_memory="128m",
                      api_port=port, token_file=str(token))
            cluster_serve(model, [*SERVE_ARGS, *serve_settings(step_timeout, replan_after)],
                          name, port, detach=True)
            rows = run_faults(Cluster(info, token), faults, replan_after)
        finally:
            down(name)
    return {"model": model, "image": image, "settings": settings, "faults": rows}


def serve_settings(step_timeout: float, replan_after: float) -> list[str]:
    return ["--step-timeout", str(step_timeout), "--replan-after", str(replan_after),
            "--shutdown-timeout", "5"]


def table(res: dict) -> str:
    """The docs/reliability.md table."""
    head = ("| fault | detect s | serve again s | degraded | completed | failed in flight | "
            "refused 503 | hung | 500s |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for fault, r in res["faults"].items():
        cells = [fault, r["detect_s"], r["serve_s"], "yes" if r["served_degraded"] else "no",
                 r["completed"], r["failed"] - r["refused_503"], r["refused_503"], r["hung"],
                 r["http_500"]]
        lines.append("| " + " | ".join("-" if c is None else str(c) for c in cells) + " |")
    return "\n".join(lines)
