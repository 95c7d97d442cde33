"""`onenode cluster serve MODEL [serve flags]`: serve inside the cluster's head container.

Waits (bounded) until the Ray cluster has the devices T x P needs, checks the model is at the same
path on every node (naming the nodes that lack it), starts `onenode serve` in the head, and waits
until the API answers on the host's loopback port published at `cluster up`.
"""

import threading
import time
import urllib.error
import urllib.request

from cluster import backend
from cluster.progress import step
from cluster.status import cluster_status
from onenode import names
from onenode.errors import ClusterError

LOG = "/tmp/onenode-serve.log"


def parallel_sizes(serve_args: list[str]) -> int:
    world, flags = 1, ("--tensor-parallel-size", "-tp", "--pipeline-parallel-size", "-pp")
    for i, a in enumerate(serve_args):
        key, _, val = a.partition("=")
        if key in flags:
            world *= int(val or serve_args[i + 1])
    return world


def wait_for_devices(name: str, world: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        rows = cluster_status(name)
        have = sum(max(r["gpus"], 0) or r["cpus"] for r in rows if r["alive"])
        if have >= world:
            return rows
        if time.monotonic() >= deadline:
            per = ", ".join(f"{r['ip']}: {'alive' if r['alive'] else 'down'} {r['cpus']:g} CPU "
                            f"{r['gpus']:g} GPU" for r in rows) or "no nodes"
            raise ClusterError(f"the cluster has {have:g} devices but tensor x pipeline parallel "
                               f"needs {world} ({per}); add nodes (`onenode cluster up --nodes N`)"
                               f" or lower the sizes")
        time.sleep(2)


def check_model_everywhere(c, rows: list[dict], model: str) -> None:
    missing = [f"{r['name']} ({r['ip']})" for r in rows
               if backend.exec_in(c, r["name"], ["test", "-e", model])[0] != 0]
    if missing:
        raise ClusterError(f"model {model} is missing on {', '.join(missing)}; put it at the same "
                           f"path on every node (mount the same HF_HOME) and retry")


def cluster_serve(model: str, serve_args: list[str], name: str = "onenode", port: int = 8000,
                  detach: bool = False, timeout: float = 600.0) -> str:
    c = backend.client()
    rows = wait_for_devices(name, parallel_sizes(serve_args), 60)
    check_model_everywhere(c, rows, model)
    head = next(r["name"] for r in rows if r["role"] == "head")
    url = f"http://127.0.0.1:{port}"
    if _alive(c, head):
        step(f"`onenode serve` already runs in {head}; stop it with `onenode cluster serve-stop`")
        _wait_healthy(c, head, url, timeout)
        return url
    backend.exec_in(c, head, ["rm", "-f", LOG])
    cmd = ["python", "-m", "cluster.detached", LOG, "onenode", "serve", model,
           "--host", "0.0.0.0", "--port", "8000", *serve_args]
    backend.exec_detached(c, head, cmd)
    step(f"starting `onenode serve {model}` in {head}; logs: docker exec {head} cat {LOG}")
    stop = threading.Event()
    threading.Thread(target=_stream_log, args=(c, head, stop), daemon=True).start()
    try:
        _wait_healthy(c, head, url, timeout)
        step(f"serving at {url}/v1 (stop: onenode cluster serve-stop"
             + ("" if name == "onenode" else f" --name {name}") + ")")
        if not detach:
            while _alive(c, head):
                time.sleep(2)
    except KeyboardInterrupt:
        stop_serving(name)
    finally:
        stop.set()
    return url


def _wait_healthy(c, head: str, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=5).status == 200:
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if not _alive(c, head):
            tail = " | ".join(backend.logs_of_file(c, head, LOG).strip().splitlines()[-3:])
            raise ClusterError(f"onenode serve exited in {head}: {tail[:400]}")
        time.sleep(2)
    raise ClusterError(f"the server did not answer {url}/health within {timeout:.0f}s; see "
                       f"`docker exec {head} cat {LOG}`")


def _alive(c, head: str) -> bool:
    return backend.exec_in(c, head, ["pgrep", "-f", "onenode serve"])[0] == 0


def _stream_log(c, head: str, stop: threading.Event) -> None:
    for chunk in backend.exec_stream(c, head, ["tail", "-n", "+1", "-F", LOG]):
        if stop.is_set():
            break
        print(chunk.decode(errors="replace"), end="", flush=True)


def stop_serving(name: str = "onenode") -> None:
    c = backend.client()
    backend.exec_in(c, names.head_container(name), ["pkill", "-TERM", "-f", "onenode serve"])
