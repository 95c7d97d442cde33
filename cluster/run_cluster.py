"""`run_cluster IMAGE HEAD_IP --head|--worker HF_HOME [docker options]`: one node of the cluster.

Foreground by default, like vLLM's run_cluster.sh: the command lives as long as the node, and
Ctrl-C / SIGTERM stops and removes the container. `--detach` returns once the node is ready.
"""

import json
import os
import shlex
import signal
import sys
import time

from cluster import backend
from cluster.api_key import SERVE_HOST, SERVE_PORT
from cluster.args import help_text, parse_run_cluster, wants_help
from cluster.node import resolve_spec, start_node
from cluster.progress import step
from onenode.errors import OnenodeError
from onenode.secrets import mask_text, mask_value, read_key_file, secret_values


def run(argv: list[str]) -> int:
    if wants_help(argv):
        print(help_text())
        return 0
    args = parse_run_cluster(argv)
    if args.dry_run:
        print(json.dumps(dry_run(args), indent=2, sort_keys=True))
        return 0
    if args.no_ray_auth:
        step("[yellow]warning[/]: --no-ray-auth: Ray token auth is off (RAY_AUTH_MODE=disabled); "
             "anything that reaches this node can use the cluster")
    if args.publish and args.network == "host":
        step("[yellow]warning[/]: -p/--publish is ignored on the host network (ports are the "
             "host's already)")
    # SIGTERM behaves like Ctrl-C: a node still starting is removed (start_node), a running
    # foreground node is stopped and removed (_follow).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        container, _ = start_node(args)
    except KeyboardInterrupt:
        step("interrupted while starting; the node was removed")
        return 130
    name = container.name
    try:
        if args.serve:
            _start_serving(container, args)
        if args.detach:
            step(f"{name} is ready ({args.role}); stop it with `docker rm -f {name}`")
            return 0
        key = read_key_file(args.api_key_file)[1] if args.api_key_file else None
        return _follow(name, [key] if key else [])
    except KeyboardInterrupt:  # before _follow took over: the foreground node still goes
        if not args.detach:
            backend.remove(backend.client(), name)
        return 130


def dry_run(args) -> dict:
    """What `run_cluster` would pass to docker-py, touching no Docker: `containers.run` kwargs
    (and, with --serve, the command the head's supervisor runs). Secret-named env values are
    masked; a missing head token is generated only at the real start."""
    spec = resolve_spec(args, dict(os.environ), create_token=False)
    kwargs = backend.run_kwargs(spec)
    # Paths to secret files (RAY_AUTH_TOKEN_PATH, ONENODE_API_KEY_FILE) are shown, values not.
    kwargs["environment"] = {k: v if k.endswith(("_PATH", "_FILE")) else mask_value(k, v)
                             for k, v in kwargs["environment"].items()}
    out = {"containers.run": kwargs}
    if args.serve:
        out["exec_run"] = {"container": spec.name, "cmd": ["onenode", "serve", *serve_args(args)],
                           "supervised": True}
    return out


def serve_args(args) -> list[str]:
    """`--serve MODEL`: the `onenode serve` arguments the head's supervisor runs (and re-runs
    after a restart of the container). The key, if any, is read by the server from the mounted
    file the container env names."""
    return [args.serve, "--host", SERVE_HOST, "--port", str(SERVE_PORT),
            *shlex.split(args.serve_args)]


def _start_serving(container, args) -> None:
    """The server runs under the container's supervisor, so it comes back when the head
    container restarts; the engine waits (up to 10 minutes) for the devices it needs through
    Ray, like `onenode cluster serve`."""
    from cluster.serve import LOG, set_serve_config

    set_serve_config(backend.client(), container.name, serve_args(args))
    step(f"started `onenode serve {args.serve}` in {container.name} on port 8000; "
         f"log: docker exec {container.name} tail -f {LOG}")


def _follow(name: str, secrets: list[str]) -> int:
    c = backend.client()
    try:
        container = backend.get(c, name)
        secrets = secrets + secret_values(backend.container_env(container))
        step(f"{name} is ready; following its logs (Ctrl-C stops and removes it)")
        since = None
        while True:
            for chunk in backend.follow_logs(container, since):
                sys.stdout.write(mask_text(chunk.decode(errors="replace"), secrets))
                sys.stdout.flush()
            since = int(time.time())
            if not backend.restarting(container):  # exited for good (`docker stop`, no policy)
                break
            step(f"{name} exited; its restart policy brings it back (Ctrl-C removes it)")
        code = int(container.attrs["State"].get("ExitCode", 1))
    except KeyboardInterrupt:
        step(f"stopping and removing {name}")
        code = 0
    finally:
        backend.remove(c, name)
    return code


def main() -> None:
    debug = "--debug" in sys.argv
    argv = [a for a in sys.argv[1:] if a != "--debug"]
    try:
        sys.exit(run(argv))
    except OnenodeError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
