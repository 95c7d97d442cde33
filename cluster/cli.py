"""Typer commands `onenode cluster ...` and `onenode image ...` (thin: parse, call, render)."""

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

cluster_app = typer.Typer(help="A simulated multi-host cluster on this machine.",
                          no_args_is_help=True)
image_app = typer.Typer(help="The onenode container image.", no_args_is_help=True)


def _env(items: list[str]) -> dict:
    out = {}
    for item in items or []:
        if not item.split("=", 1)[0] or "=" not in item:
            raise typer.BadParameter(f"{item!r}: use -e KEY=VALUE")
        k, v = item.split("=", 1)
        out[k] = v
    return out


@cluster_app.command("up")
def up(
    nodes: Annotated[int, typer.Option(help="head + workers")] = 3,
    name: Annotated[str, typer.Option(help="cluster name: containers NAME-head, "
                                           "NAME-worker-IP, network NAME-net")] = "onenode",
    image: Annotated[str, typer.Option()] = "onenode:latest",
    subnet: Annotated[Optional[str], typer.Option(help="e.g. 172.30.7.0/24")] = None,
    cpus_per_node: Annotated[int, typer.Option(help="Ray CPUs per node")] = 2,
    object_store_memory: Annotated[str, typer.Option()] = "512m",
    hf_home: Annotated[Optional[Path], typer.Option(
        help="host dir mounted at /root/.cache/huggingface on every node [default: $HF_HOME, "
             "else ~/.cache/huggingface]")] = None,
    env: Annotated[Optional[list[str]], typer.Option("--env", "-e", help="KEY=VALUE on every "
                                                                         "node")] = None,
    ray_auth: Annotated[bool, typer.Option("--ray-auth/--no-ray-auth",
                                           help="Ray token auth (off is unsafe)")] = True,
    api_key_file: Annotated[Optional[Path], typer.Option(
        help="file holding the API key for `cluster serve`, mounted read-only in the "
             "head")] = None,
    replace: Annotated[bool, typer.Option(help="recreate nodes whose spec differs")] = False,
    api_port: Annotated[int, typer.Option(help="host loopback port for `cluster serve`")] = 8000,
):
    """Start head + workers as containers on a project-made bridge network."""
    from cluster.local import up as do_up
    from cluster.progress import step
    from cluster.status import cluster_status, render

    if not ray_auth:
        step("[yellow]warning[/]: Ray token auth is off (RAY_AUTH_MODE=disabled); anything that "
             "reaches the nodes can use the cluster")
    info = do_up(nodes, name, image, subnet, cpus_per_node, object_store_memory, hf_home,
                 _env(env), ray_auth, replace=replace, api_port=api_port,
                 api_key_file=str(api_key_file) if api_key_file else None)
    render(cluster_status(info.name))
    step(f"inside: docker exec {info.head} ray status   |   stop: onenode cluster down"
         + ("" if name == "onenode" else f" --name {name}"))


@cluster_app.command("down")
def down(name: Annotated[str, typer.Option()] = "onenode"):
    """Remove the cluster's containers and its network."""
    from cluster.local import down as do_down
    from cluster.progress import step

    step(f"removed {do_down(name)} container(s) and network {name}-net")


@cluster_app.command("status")
def status(name: Annotated[str, typer.Option()] = "onenode",
           as_json: Annotated[bool, typer.Option("--json")] = False):
    """Nodes, IPs, roles, liveness, restarts, CPUs/GPUs, Ray version and the API server's
    state."""
    from cluster.status import cluster_status, render, serving_state

    rows, serving = cluster_status(name), serving_state(name)
    for row in rows:  # the API server runs on the head
        row["serving"] = serving if row["role"] == "head" else None
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        render(rows, serving)


@image_app.command("build")
def build(variant: Annotated[str, typer.Option(help="cpu (images/Dockerfile) or cuda "
                                                    "(images/Dockerfile.cuda)")] = "cpu",
          latest: Annotated[bool, typer.Option(help="also tag onenode:latest")] = True):
    """Build onenode:<content hash> (+ onenode:latest) offline; a no-op when already built."""
    from cluster.image import build_image

    typer.echo(build_image(variant, tag_latest=latest))


@image_app.command("lock")
def lock(variant: Annotated[Optional[list[str]], typer.Option(
        help="cpu and/or cuda (default: both)")] = None):
    """Resolve images/requirements.txt into images/lock-<variant>.txt (exact versions with hashes,
    Python 3.11 manylinux x86_64) with uv; `make lock` runs this."""
    from cluster.lock import make_lock
    from cluster.progress import step

    for name in variant or ["cpu", "cuda"]:
        step(f"locked {make_lock(name).name}")


@cluster_app.command("serve", context_settings={"allow_extra_args": True,
                                                "ignore_unknown_options": True})
def serve(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(help="model path as seen inside the containers")],
    name: Annotated[str, typer.Option()] = "onenode",
    port: Annotated[int, typer.Option(help="host loopback port published at `cluster up`")] = 8000,
    detach: Annotated[bool, typer.Option(help="return once the API answers")] = False,
    allow_unauthenticated: Annotated[bool, typer.Option(
        help="serve an API reachable beyond loopback without a key (unsafe)")] = False,
):
    """Serve MODEL in the head container across the cluster; extra flags go to `onenode serve`
    (e.g. --pipeline-parallel-size 3). An API reachable beyond loopback needs a key: start the
    head with --api-key-file."""
    from cluster.serve import cluster_serve

    cluster_serve(model, list(ctx.args), name, port, detach,
                  allow_unauthenticated=allow_unauthenticated)


@cluster_app.command("serve-stop")
def serve_stop(name: Annotated[str, typer.Option()] = "onenode"):
    """Stop `onenode serve` in the head container (SIGTERM: workers shut down cleanly)."""
    from cluster.serve import stop_serving

    stop_serving(name)


@cluster_app.command("logs")
def logs(name: Annotated[str, typer.Option()] = "onenode",
         follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new lines "
                                                                     "(Ctrl-C ends)")] = False,
         tail: Annotated[int, typer.Option(help="lines of history to print first")] = 200):
    """The API server's log (a file in the head container that survives its restarts), with
    secrets masked."""
    from cluster.logs import serve_logs

    try:
        serve_logs(name, follow, tail)
    except KeyboardInterrupt:
        pass


@cluster_app.command("healthcheck")
def cluster_healthcheck(
    name: Annotated[str, typer.Option(help="Cluster name given to `onenode cluster up`")] =
    "onenode",
    model: Annotated[Optional[str], typer.Option(
        help="Model path that must be present and identical on every node")] = None,
    sizes: Annotated[str, typer.Option(
        help="All-reduce sizes per rank, e.g. 1M,16M,128M")] = "1M,16M,128M",
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
) -> None:
    """Run `onenode healthcheck` inside the cluster's head container, from the host."""
    from cluster.head_exec import exec_in_head

    args = ["onenode", "healthcheck", "--sizes", sizes]
    if model:
        args += ["--model", model]
    if strict:
        args.append("--strict")
    if json_out:
        args.append("--json")
    raise typer.Exit(exec_in_head(name, args))
