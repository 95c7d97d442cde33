"""The `onenode` command: one Typer root that mounts each package's commands.

This is the outermost layer (cluster may import engine and healthcheck, never the reverse). Every
OnenodeError is caught here once and printed as one line; `--debug` shows the traceback.
"""

import os
import sys

import typer

from engine.errors import OnenodeError

app = typer.Typer(name="onenode", no_args_is_help=True, add_completion=False,
                  help="Turn several GPU hosts into what looks like one node for LLM inference.",
                  pretty_exceptions_enable=False)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="show tracebacks")):
    if debug:
        os.environ["ONENODE_DEBUG"] = "1"


def _mount() -> None:
    from cluster.cli import cluster_app, image_app
    from engine.entrypoints.bench_cli import bench_app, model_app
    from engine.entrypoints.serve_cli import bench_serve, serve
    from healthcheck.cli import cluster_healthcheck, healthcheck
    from healthcheck.plan_cli import plan

    serve_settings = {"help_option_names": ["-h", "--help"]}
    app.command("serve", context_settings=serve_settings)(serve)
    app.command("plan")(plan)
    app.command("healthcheck")(healthcheck)
    cluster_app.command("healthcheck")(cluster_healthcheck)
    app.add_typer(cluster_app, name="cluster")
    app.add_typer(image_app, name="image")
    app.add_typer(model_app, name="model")
    bench_app.command("serve")(bench_serve)
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
