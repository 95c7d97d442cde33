"""`run_cluster IMAGE HEAD_IP --head|--worker HF_HOME [docker options]`: one node of the cluster.

Foreground by default, like vLLM's run_cluster.sh: the command lives as long as the node, and
Ctrl-C / SIGTERM stops and removes the container. `--detach` returns once the node is ready.
"""

import signal
import sys

from cluster import backend
from cluster.args import parse_run_cluster
from cluster.node import start_node
from cluster.progress import step
from cluster.secrets import is_secret, mask_text
from engine.errors import OnenodeError


def run(argv: list[str]) -> int:
    args = parse_run_cluster(argv)
    container, _ = start_node(args)
    name = container.name
    if args.serve:
        _start_serving(container, args)
    if args.detach:
        step(f"{name} is ready ({args.role}); stop it with `docker rm -f {name}`")
        return 0
    step(f"{name} is ready; following its logs (Ctrl-C stops and removes it)")
    return _follow(name)


def _start_serving(container, args) -> None:
    """`--serve MODEL`: the head also runs `onenode serve` (log: /tmp/onenode-serve.log); the
    engine waits for the devices it needs through Ray, like `onenode cluster serve`."""
    import shlex

    from cluster.serve import LOG

    cmd = ["python", "-m", "cluster.detached", LOG, "onenode", "serve", args.serve,
           "--host", "0.0.0.0", "--port", "8000", *shlex.split(args.serve_args)]
    # Workers usually join after the head: let the engine wait for them for up to 10 minutes.
    container.exec_run(cmd, detach=True, environment={"ONENODE_RAY_WAIT_S": "600"})
    step(f"started `onenode serve {args.serve}` in {container.name} on port 8000; "
         f"log: docker exec {container.name} tail -f {LOG}")


def _follow(name: str) -> int:
    c = backend.client()

    def stop(signum, _frame):
        step(f"signal {signum}: stopping and removing {name}")
        backend.remove(c, name)
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    container = backend.get(c, name)
    env = dict(e.split("=", 1) for e in container.attrs["Config"].get("Env") or [] if "=" in e)
    secrets = [v for k, v in env.items() if is_secret(k)]
    for chunk in container.logs(stream=True, follow=True):
        sys.stdout.write(mask_text(chunk.decode(errors="replace"), secrets))
        sys.stdout.flush()
    container.reload()
    code = container.attrs["State"].get("ExitCode", 1)
    backend.remove(c, name)
    return int(code)


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
