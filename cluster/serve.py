"""`onenode cluster serve MODEL [serve flags]`: serve inside the cluster's head container.

Waits (bounded) until the Ray cluster has the devices T x P needs, checks the model is at the same
path on every node (naming the nodes that lack it), refuses an API reachable beyond loopback
without a key, stores the serve config in the head container (its supervisor starts `onenode
serve` from it, now and after every restart of the container), and waits until the API answers on
the host's loopback port published at `cluster up`. Secrets are masked in everything it prints.
"""

import json
import threading
import time
import urllib.error
import urllib.request

from cluster import api_key, backend
from cluster.api_key import SERVE_HOST, SERVE_PORT
from cluster.progress import step
from cluster.serve_check import check_serve_args
from cluster.status import cluster_status
from cluster.supervisor import CONFIG_ENV, SERVE_CONFIG, SERVE_LOG
from onenode import names
from onenode.errors import ClusterError
from onenode.secrets import mask_text, secret_values

LOG = SERVE_LOG
START_GRACE_S = 10  # the supervisor starts the server a second or two after the config appears
# serve-stop waits this long for the server to drain and exit (its --shutdown-timeout is 30 s by
# default), so that a `cluster serve` right after it does not find the old one still running.
STOP_WAIT_S = 60


def api_key_to_env(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """`--api-key KEY` becomes ONENODE_API_KEY (which `onenode serve` reads), so the key is never
    in the server's argv (`ps` in the container)."""
    out, env, rest = [], {}, list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--api-key" and rest:
            env["ONENODE_API_KEY"] = rest.pop(0)
        elif arg.startswith("--api-key="):
            env["ONENODE_API_KEY"] = arg.split("=", 1)[1]
        else:
            out.append(arg)
    return out, env


def set_serve_config(c, head: str, args: list[str], env: dict[str, str] | None = None) -> None:
    """Store the serve config in the head container, where its supervisor (the container's main
    process) starts the server from it now and after every restart of the container. The config
    travels through the exec's environment, not its argv (it may hold the API key)."""
    args, key_env = api_key_to_env(args)
    config = json.dumps({"args": args, "env": {**(env or {}), **key_env}})
    code, out = backend.exec_in(c, head, ["python", "-m", "cluster.supervisor", "--set-serve"],
                                env={CONFIG_ENV: config})
    if code != 0:
        raise ClusterError(f"could not store the serve config in {head}: {out.strip()[-300:]}; "
                           f"recreate the cluster with this onenode version (`onenode cluster "
                           f"up --replace`)")


def parallel_sizes(serve_args: list[str]) -> int:
    """Devices the serve flags need: data x tensor x pipeline parallel sizes."""
    world, flags = 1, ("--tensor-parallel-size", "-tp", "--pipeline-parallel-size", "-pp",
                       "--data-parallel-size", "-dp")
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
                  detach: bool = False, timeout: float = 600.0,
                  allow_unauthenticated: bool = False) -> str:
    check_serve_args([model, *api_key_to_env(serve_args)[0]])  # before anything is stored
    c = backend.client()
    rows = wait_for_devices(name, parallel_sizes(serve_args), 60)
    check_model_everywhere(c, rows, model)
    head = next(r["name"] for r in rows if r["role"] == "head")
    secrets = check_key(c, head, serve_args, allow_unauthenticated)
    url = f"http://127.0.0.1:{port}"
    if _alive(c, head):
        step(f"`onenode serve` already runs in {head}; stop it with `onenode cluster serve-stop`")
        _wait_healthy(c, head, url, timeout, secrets)
        return url
    backend.exec_in(c, head, ["rm", "-f", LOG])
    set_serve_config(c, head, [model, "--host", SERVE_HOST, "--port", str(SERVE_PORT),
                               *serve_args])
    step(f"starting `onenode serve {model}` in {head} under its supervisor (it comes back with "
         f"the container); logs: onenode cluster logs --follow"
         + ("" if name == "onenode" else f" --name {name}"))
    stop = threading.Event()
    threading.Thread(target=_stream_log, args=(c, head, stop, secrets), daemon=True).start()
    try:
        _wait_healthy(c, head, url, timeout, secrets)
        step(f"serving at {url}/v1 (stop: onenode cluster serve-stop"
             + ("" if name == "onenode" else f" --name {name}") + ")")
        if not detach:
            while _configured(c, head):
                time.sleep(2)
    except (KeyboardInterrupt, ClusterError):
        stop_serving(name)  # a server that cannot start must not be restarted forever
        raise
    finally:
        stop.set()
    return url


def check_key(c, head: str, serve_args: list[str], allow_unauthenticated: bool) -> list[str]:
    """Refuse an API beyond loopback without a key; returns the secret values to mask in what
    this command prints (the head's secret env values and the key file's content)."""
    api_key.refuse_key_in_argv(serve_args)
    container = backend.get(c, head)
    env = backend.container_env(container)
    _, port = api_key.serve_address(serve_args)
    where = api_key.exposure(backend.host_network(container), serve_args,
                             backend.published_ips(container, port))
    warning = api_key.check_serving(where, api_key.has_key(env, serve_args),
                                    allow_unauthenticated, "start the head with run_cluster ... "
                                    "--api-key-file FILE or `onenode cluster up --api-key-file "
                                    "FILE`")
    if warning:
        step(f"[yellow]warning[/]: {warning}")
    secrets = secret_values(env)
    if env.get(api_key.KEY_FILE_ENV):
        code, out = backend.exec_in(c, head, ["cat", env[api_key.KEY_FILE_ENV]])
        secrets += [out.strip()] if code == 0 else []
    return secrets


def _configured(c, head: str) -> bool:
    """While the serve config exists the supervisor keeps the server up (through restarts)."""
    import docker

    try:
        return backend.exec_in(c, head, ["test", "-e", SERVE_CONFIG])[0] == 0
    except ClusterError:  # the container is gone (`cluster down`)
        return False
    except docker.errors.APIError:  # the container is restarting: it will serve again
        return True


def _wait_healthy(c, head: str, url: str, timeout: float, secrets: list[str]) -> None:
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/health", timeout=5).status == 200:
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if time.monotonic() - start >= START_GRACE_S and not _alive(c, head):
            tail = " | ".join(backend.logs_of_file(c, head, LOG).strip().splitlines()[-3:])
            raise ClusterError(f"onenode serve exited in {head}: {mask_text(tail, secrets)[:400]}")
        time.sleep(2)
    raise ClusterError(f"the server did not answer {url}/health within {timeout:.0f}s; see "
                       f"`onenode cluster logs` (docker exec {head} cat {LOG})")


def _alive(c, head: str) -> bool:
    return backend.exec_in(c, head, ["pgrep", "-f", "onenode serve"])[0] == 0


def _stream_log(c, head: str, stop: threading.Event, secrets: list[str]) -> None:
    for chunk in backend.exec_stream(c, head, ["tail", "-n", "+1", "-F", LOG]):
        if stop.is_set():
            break
        print(mask_text(chunk.decode(errors="replace"), secrets), end="", flush=True)


def stop_serving(name: str = "onenode") -> None:
    """Remove the serve config first, so the supervisor does not start the server again."""
    c = backend.client()
    head = names.head_container(name)
    backend.exec_in(c, head, ["python", "-m", "cluster.supervisor", "--clear-serve"])
    backend.exec_in(c, head, ["pkill", "-TERM", "-f", "onenode serve"])
    deadline = time.monotonic() + STOP_WAIT_S
    while _alive(c, head):
        if time.monotonic() > deadline:
            raise ClusterError(f"`onenode serve` in {head} is still draining after "
                               f"{STOP_WAIT_S}s; end it with `docker exec {head} pkill -KILL -f "
                               f"'onenode serve'`")
        time.sleep(1)
