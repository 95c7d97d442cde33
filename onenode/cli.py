"""The `onenode` command: the composition root, above every package: it mounts each package's Typer app and wires the few
things that cross layers (the planner's live-cluster reader comes from healthcheck). Nothing
imports this module except the console script. Every OnenodeError is caught here once and printed
as one line; `--debug` shows the traceback.
"""

import os
import sys

import typer

from onenode.errors import OnenodeError

app = typer.Typer(name="onenode", no_args_is_help=True, add_completion=False,
                  help="Turn several GPU hosts into what looks like one node for LLM inference.",
                  pretty_exceptions_enable=False)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="show tracebacks")):
    if debug:
        os.environ["ONENODE_DEBUG"] = "1"


def _mount() -> None:
    from bench.cli import bench_app
    from cluster.cli import cluster_app, image_app
    from cluster.k8s.cli import k8s_app
    from engine.entrypoints.model_cli import model_app
    from engine.entrypoints.serve_cli import serve
    from engine.planner.cli import plan, set_live_cluster_reader
    from healthcheck.cli import healthcheck
    from healthcheck.runner import live_cluster_shape

    set_live_cluster_reader(live_cluster_shape)
    serve_settings = {"help_option_names": ["-h", "--help"]}
    app.command("serve", context_settings=serve_settings)(serve)
    app.command("plan")(plan)
    app.command("healthcheck")(healthcheck)
    app.add_typer(cluster_app, name="cluster")
    app.add_typer(image_app, name="image")
    app.add_typer(k8s_app, name="k8s")
    app.add_typer(model_app, name="model")
    app.add_typer(bench_app, name="bench")


def main() -> None:
    debug = "--debug" in sys.argv or os.environ.get("ONENODE_DEBUG") == "1"
    try:
        _mount()
        app(standalone_mode=True)
    except OnenodeError as exc:
        if debug:
            raise
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        sys.exit(2)


if __name__ == "__main__":
    main()
