"""`onenode healthcheck` (inside a cluster container; `onenode cluster healthcheck` runs it in the
head container from the host). Thin: parse, run, render, exit with the code.

Exit codes: 0 all good (warnings allowed), 1 warnings with --strict, 2 failures.
"""

from typing import Annotated

import typer
from rich.console import Console

from healthcheck.report import render, report_json
from healthcheck.runner import HealthcheckOptions, run_healthcheck
from healthcheck.thresholds import parse_expect
from onenode.units import parse_bytes, parse_sizes

SizesOpt = Annotated[str, typer.Option(help="All-reduce sizes per rank, e.g. 1M,16M,128M")]
ModelOpt = Annotated[str | None, typer.Option(
    help="Model path that must be present and identical on every node")]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object")]


def healthcheck(
    address: Annotated[str, typer.Option(help="Ray address of the cluster")] = "auto",
    model: ModelOpt = None,
    sizes: SizesOpt = "1M,16M,128M",
    p2p_size: Annotated[str, typer.Option(help="Point-to-point message size")] = "16M",
    timeout: Annotated[float, typer.Option(help="Seconds each step may take")] = 60.0,
    expect: Annotated[list[str] | None, typer.Option(
        help="Expected GB/s of a link kind, e.g. --expect socket=2.5 (see docs)")] = None,
    nccl: Annotated[str, typer.Option(help="auto (when every node has GPUs) or off")] = "auto",
    simulated: Annotated[bool, typer.Option(
        "--simulated", help="Several Ray nodes on one host: shared IPs are expected")] = False,
    strict: StrictOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Check that the nodes agree (versions, env, IPs, model, shm, GPUs) and can talk (all-reduce,
    point-to-point, NCCL transports)."""
    opts = HealthcheckOptions(address=address, model=model, sizes=tuple(parse_sizes(sizes)),
                              p2p_size=parse_bytes(p2p_size, flag="--p2p-size"), timeout_s=timeout,
                              expect=parse_expect(expect), simulated=simulated, nccl=nccl)
    console = Console()
    if not json_out:
        console.print(f"[bold]onenode healthcheck[/bold] (Ray {address}) ...")
    report = run_healthcheck(opts)
    if json_out:
        print(report_json(report, strict))
    else:
        render(console, report, strict)
    raise typer.Exit(report.exit_code(strict))
