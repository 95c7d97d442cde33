"""Options declared on dataclass fields: ranges checked in one line, CLI flags derived."""

from dataclasses import dataclass

import pytest
import typer
from typer.testing import CliRunner

from onenode.errors import ConfigError
from onenode.options import check_ranges, cli_parameters, command, from_cli, option


@dataclass(frozen=True, slots=True)
class Demo:
    name: str = option(help="positional")
    port: int = option(8000, range=(1, 65535))
    size: int = option(1, flags=("--size", "-s"), range=(1, None))
    keys: tuple[str, ...] = option((), envvar=("DEMO_KEY",))
    ratio: float | None = option(None)
    fast: bool = option(False)
    internal: int = option(0, cli=False)

    def __post_init__(self):
        check_ranges(self)


def test_out_of_range_is_one_line_naming_the_range():
    with pytest.raises(ConfigError) as err:
        Demo("x", port=99999)
    assert str(err.value) == "port must be 1-65535 (got 99999)"
    with pytest.raises(ConfigError, match="size must be >= 1"):
        Demo("x", size=0)


def test_cli_is_derived_from_the_fields():
    params = cli_parameters(Demo)
    assert [p.name for p in params] == ["name", "port", "size", "keys", "ratio", "fast"]
    got = {}
    cmd = command("demo", "Demo.", params, lambda **kw: got.update(cfg=from_cli(Demo, kw)))
    app = typer.Typer()
    app.command()(cmd)
    result = CliRunner().invoke(app, ["n", "-s", "3", "--keys", "a", "--keys", "b", "--fast",
                                      "--ratio", "0.5"], env={"DEMO_KEY": ""})
    assert result.exit_code == 0, result.output
    assert got["cfg"] == Demo("n", size=3, keys=("a", "b"), ratio=0.5, fast=True)
    result = CliRunner().invoke(app, ["n"], env={"DEMO_KEY": "k"})
    assert got["cfg"].keys == ("k",)
    result = CliRunner().invoke(app, ["n", "--port", "0"])
    assert isinstance(result.exception, ConfigError)
