"""Progress lines and bars for long host-side work (rich, to stderr)."""

from rich.console import Console

console = Console(stderr=True)


def step(message: str) -> None:
    console.print(f"[bold cyan]==>[/] {message}")
