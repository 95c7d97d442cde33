"""`run_cluster IMAGE HEAD_IP --head|--worker HF_HOME [docker options]`: one node of the cluster.

Foreground by default, like vLLM's run_cluster.sh: the command lives as long as the node, and
Ctrl-C / SIGTERM stops and removes the container. `--detach` returns once the node is ready.
"""

import signal
import sys
import time

from cluster import backend
from cluster.args import parse_run_cluster
from cluster.node import start_node
from cluster.progress import step
from onenode.errors import OnenodeError
from onenode.secrets import is_secret, mask_text


def run(argv: list[str]) -> int:
    args = parse_run_cluster(argv)
    if args.no_ray_auth:
        step("[yellow]warning[/]: --no-ray-auth: Ray token auth is off; anything that reaches "
             "this node can use the cluster")
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
        return _follow(name)
    except KeyboardInterrupt:  # before _follow took over: the foreground node still goes
        if not args.detach:
            backend.remove(backend.client(), name)
        return 130


def _start_serving(container, args) -> None:
    """`--serve MODEL`: the head also runs `onenode serve`, under the container's supervisor, so
    it comes back when the head container restarts; the engine waits (up to 10 minutes) for the
    devices it needs through Ray, like `onenode cluster serve`."""
    import shlex

    from cluster.serve import LOG, set_serve_config

    cmd = [args.serve, "--host", "0.0.0.0", "--port", "8000", *shlex.split(args.serve_args)]
    set_serve_config(backend.client(), container.name, cmd)
    step(f"started `onenode serve {args.serve}` in {container.name} on port 8000; "
         f"log: docker exec {container.name} tail -f {LOG}")


def _follow(name: str) -> int:
    c = backend.client()
    try:
        container = backend.get(c, name)
        secrets = [v for k, v in backend.container_env(container).items() if is_secret(k)]
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
