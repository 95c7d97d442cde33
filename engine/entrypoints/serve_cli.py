"""`onenode serve MODEL ...`: a thin Typer command derived from EngineConfig and ServerConfig.

Flag names are vLLM's, so a runbook's `vllm serve ...` works after replacing `vllm` with
`onenode`; vLLM flags onenode cannot honour yet are accepted (hidden) only to be refused in one
line by engine/vllm_args.py. The root app registers it: `app.command("serve")(serve)`.
"""

import dataclasses

from engine.config import EngineConfig
from engine.entrypoints.server_config import ServerConfig
from engine.entrypoints.serving_defaults import serving_defaults
from engine.vllm_args import IGNORED, UNSUPPORTED, check_unsupported
from onenode.options import cli_parameters, command, from_cli, option


def _vllm_only_args():
    """A dataclass of the vLLM flags onenode refuses or ignores, so they parse like vLLM's."""
    taken = {f.name for cls in (EngineConfig, ServerConfig) for f in dataclasses.fields(cls)}
    specs = []
    for name, off in [*((n, v[0]) for n, v in UNSUPPORTED.items()), *IGNORED.items()]:
        if name not in taken:
            kind = type(off) if off is not None else str | None
            specs.append((name, kind, option(off, hidden=True)))
    return dataclasses.make_dataclass("VllmOnlyArgs", specs, frozen=True)


VllmOnlyArgs = _vllm_only_args()


@dataclasses.dataclass(frozen=True)
class ServeCommandArgs:
    """Flags of the command itself, not of the server it starts."""
    check_args: bool = option(
        False, flags=("--check-args",),
        help="only parse and validate the flags, load nothing (run_cluster --serve and cluster "
             "serve do this before storing them)")


def _serve(**values) -> None:
    for name in UNSUPPORTED:
        if name in values:
            check_unsupported(name, values[name])
    server = from_cli(ServerConfig, values)  # cheap checks (port range) before the model loads
    engine = serving_defaults(from_cli(EngineConfig, values))
    if values.get("check_args"):
        print("the serve flags are valid")
        return
    from engine.entrypoints.api_server import run_server

    run_server(engine, server)


serve = command(
    "serve", "Serve MODEL with an OpenAI-compatible API (/v1/completions, /v1/chat/completions, "
             "...).",
    [*cli_parameters(EngineConfig), *cli_parameters(ServerConfig),
     *cli_parameters(VllmOnlyArgs), *cli_parameters(ServeCommandArgs)], _serve)
