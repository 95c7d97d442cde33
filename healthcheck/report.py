"""How a healthcheck is shown: nodes x checks, then all-reduce sizes, then links x bandwidth, then
one line per finding; or the whole report as one JSON object."""

import json

from rich import box
from rich.console import Console
from rich.table import Table

from healthcheck.runner import HealthReport
from healthcheck.verdicts import FAIL, INFO, NODE_CHECKS, OK, WARN, node_matrix
from onenode.units import human_bytes

MARK = {OK: "[green]ok[/green]", INFO: "[cyan]info[/cyan]", WARN: "[yellow]WARN[/yellow]",
        FAIL: "[bold red]FAIL[/bold red]"}


def report_json(report: HealthReport, strict: bool = False) -> str:
    return json.dumps(report.to_dict(strict), indent=2, default=str)


def render(console: Console, report: HealthReport, strict: bool = False) -> None:
    console.print(nodes_table(report))
    if report.nodes:
        console.print(versions_line(report), markup=False, highlight=False)
    for backend, results in report.allreduce.items():
        console.print(allreduce_table(backend, results, report.world.get(backend, 0)))
    for backend, links in report.links.items():
        if links:
            console.print(links_table(report, backend))
    if report.transports:
        console.print(transports_table(report))
    findings = [v for v in report.verdicts if v.level != OK]
    for v in sorted(findings, key=lambda v: (-[OK, INFO, WARN, FAIL].index(v.level), v.check)):
        console.print(f"{MARK[v.level]} [bold]{v.check}[/bold]: ", end="")
        console.print(v.message, markup=False, highlight=False)
    fails = sum(v.level == FAIL for v in report.verdicts)
    warns = sum(v.level == WARN for v in report.verdicts)
    code = report.exit_code(strict)
    style = "red" if code == 2 else "yellow" if warns else "green"
    console.print(f"[bold {style}]healthcheck: {len(report.nodes)} node(s), {fails} failure(s), "
                  f"{warns} warning(s) -> exit {code}[/bold {style}]")


HEADERS = {"reachable": "reach", "versions": "versions", "env": "env", "ip": "ip",
           "model": "model", "shm": "shm", "gpu": "GPUs"}


def nodes_table(report: HealthReport) -> Table:
    """One row per node, one column per check; shm and GPU cells carry the sizes."""
    table = Table(title="nodes x checks", box=box.SIMPLE_HEAD)
    table.add_column("node", no_wrap=True)
    for check in NODE_CHECKS:
        table.add_column(HEADERS[check], no_wrap=True)
    matrix = node_matrix(list(report.nodes), report.verdicts)
    for label, inv in report.nodes.items():
        detail = {"shm": _short_bytes(inv.shm_bytes),
                  "gpu": f"{len(inv.gpus)}x{_short_bytes(inv.gpus[0]['memory_bytes'])}"
                  if inv.gpus else "none"}
        table.add_row(label, *(f"{MARK[matrix[label][c]]} {detail.get(c, '')}".rstrip()
                               for c in NODE_CHECKS))
    for v in report.verdicts:
        if v.check == "reachable" and v.level == FAIL:
            for label in v.nodes:
                if label not in report.nodes:
                    table.add_row(label, MARK[FAIL], *("-" for _ in NODE_CHECKS[1:]))
    return table


def _short_bytes(n: int) -> str:
    for unit, scale in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20)):
        if n >= scale:
            return f"{n / scale:.0f}{unit}"
    return f"{n}B"


def versions_line(report: HealthReport) -> str:
    """The versions every node runs (a difference is a `versions` finding below)."""
    seen: dict[str, set] = {}
    for inv in report.nodes.values():
        for name, version in inv.versions.items():
            seen.setdefault(name, set()).add(version)
        if inv.image_id:
            seen.setdefault("image", set()).add(inv.image_id)
    return "versions: " + ", ".join(f"{name} {'/'.join(sorted(v))}" for name, v in seen.items())


def allreduce_table(backend: str, results, world: int) -> Table:
    table = Table(title=f"{backend} all-reduce across {world} rank(s) (float32 sum)",
                  box=box.SIMPLE_HEAD)
    for col in ("size", "correct", "time", "algbw GB/s", "busbw GB/s"):
        table.add_column(col, justify="right")
    for r in results:
        table.add_row(human_bytes(r.size), MARK[OK] if r.correct else MARK[FAIL],
                      f"{r.time_s * 1e3:.2f} ms", f"{r.algbw_gbps:.3f}", f"{r.busbw_gbps:.3f}")
    return table


def links_table(report: HealthReport, backend: str) -> Table:
    table = Table(title=f"{backend} point-to-point, {human_bytes(report.p2p_size)} one-way",
                  box=box.SIMPLE_HEAD)
    for col in ("from", "to", "kind", "GB/s", "expected", "verdict"):
        table.add_column(col, no_wrap=True)
    for link in report.links[backend]:
        table.add_row(link.src, link.dst, link.kind, f"{link.gbps:.3f}",
                      f"{link.expected_gbps:g}", MARK[link.level])
    return table


def transports_table(report: HealthReport) -> Table:
    table = Table(title="NCCL transports (NCCL_DEBUG=INFO)", box=box.SIMPLE_HEAD)
    for col in ("ranks", "inter-node", "transport", "GDRDMA", "channels"):
        table.add_column(col)
    for t in report.transports:
        table.add_row(f"{t.src} -> {t.dst}", "yes" if t.inter_node else "no", t.transport,
                      "yes" if t.gdrdma else "no", str(t.channels))
    return table
