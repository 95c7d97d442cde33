"""`onenode cluster status`: containers joined with Ray's view of the nodes, as a table or JSON."""

import json

from cluster import backend
from cluster.bind_sources import missing_bind_sources
from cluster.spec import LABEL_ROLE

RAY_NODES_SNIPPET = (
    "import json, ray; ray.init(address='auto', logging_level='ERROR', log_to_driver=False);"
    "print('ONENODE_JSON=' + json.dumps({'version': ray.__version__, 'nodes': ["
    "{'ip': n['NodeManagerAddress'], 'alive': n['Alive'], 'cpus': n['Resources'].get('CPU', 0),"
    " 'gpus': n['Resources'].get('GPU', 0)} for n in ray.nodes()]}))")


def ray_view(c, head: str) -> dict:
    code, out = backend.exec_in(c, head, ["python", "-c", RAY_NODES_SNIPPET])
    for line in out.splitlines():
        if line.startswith("ONENODE_JSON="):
            return json.loads(line.split("=", 1)[1])
    return {"version": None, "nodes": []}


def cluster_status(name: str) -> list[dict]:
    c = backend.client()
    containers = backend.list_cluster(c, name)
    head = next((x for x in containers if x.labels.get(LABEL_ROLE) == "head"), None)
    view = {"version": None, "nodes": []}
    if head is not None and head.status == "running":
        view = ray_view(c, head.name)
    by_ip = {}
    for n in view["nodes"]:  # a restarted node leaves a dead entry beside the live one
        by_ip[n["ip"]] = n if n["alive"] or n["ip"] not in by_ip else by_ip[n["ip"]]
    rows = []
    for x in sorted(containers, key=lambda x: (x.labels.get(LABEL_ROLE) != "head", x.name)):
        ip = backend.container_ip(x, f"{name}-net") or _env_ip(x)
        ray_node = by_ip.get(ip, {})
        rows.append({"name": x.name, "ip": ip, "role": x.labels.get(LABEL_ROLE),
                     "container": x.status,
                     "alive": x.status == "running" and bool(ray_node.get("alive")),
                     "cpus": ray_node.get("cpus", 0), "gpus": ray_node.get("gpus", 0),
                     "ray_version": view["version"], "restarts": backend.restart_count(x),
                     "missing_files": missing_bind_sources(x.name, backend.bind_mounts(x))})
    return rows


def _env_ip(container) -> str | None:
    return backend.container_env(container).get("VLLM_HOST_IP")


def render(rows: list[dict], serving: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="onenode cluster")
    for col in ("node", "ip", "role", "alive", "restarts", "CPUs", "GPUs", "ray"):
        table.add_column(col, no_wrap=True)
    for r in rows:
        alive = "[green]yes[/]" if r["alive"] else f"[red]no[/] ({r['container']})"
        table.add_row(r["name"], r["ip"] or "-", r["role"] or "-", alive, str(r["restarts"]),
                      f"{r['cpus']:g}",
                      f"{r['gpus']:g}", r["ray_version"] or "-")
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # logs and CI: do not squeeze the table to 80 columns
    console.print(table)
    for r in rows:
        for line in r.get("missing_files", ()):
            console.print(f"[red]missing[/]: {line}", soft_wrap=True)
    if serving is not None:
        console.print(f"API server: {serving}")


# Asked from inside the head (loopback there): the answer of the server's /health and its reason.
HEALTH_SNIPPET = (
    "import urllib.request, urllib.error\n"
    "try:\n r = urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=5)\n"
    " print(r.status, r.read().decode()[:300])\n"
    "except urllib.error.HTTPError as e:\n print(e.code, e.read().decode()[:300])\n"
    "except OSError:\n print(0)\n")


def serving_state(name: str) -> str | None:
    """`serving`, `not serving` or the 503 reason (degraded / recovering); None without a head."""
    c = backend.client()
    head = next((x for x in backend.list_cluster(c, name)
                 if x.labels.get(LABEL_ROLE) == "head" and x.status == "running"), None)
    if head is None:
        return None
    code, out = backend.exec_in(c, head.name, ["python", "-c", HEALTH_SNIPPET])
    status, _, body = out.strip().partition(" ")
    if code != 0 or status == "0":
        return "not serving"
    if status == "200":
        return _serving(body)
    try:
        return json.loads(body)["error"]["message"]
    except (ValueError, KeyError):
        return f"unhealthy (HTTP {status})"


def _serving(body: str) -> str:
    """`serving`, or `serving degraded: LAYOUT` while the engine serves a re-planned layout."""
    try:
        health = json.loads(body)
    except ValueError:
        return "serving"
    if isinstance(health, dict) and health.get("degraded"):
        return f"serving degraded: {health.get('layout')}"
    return "serving"
