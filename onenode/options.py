"""Options declared once, on a frozen dataclass's fields, and derived everywhere else.

`option(...)` is a dataclass field that also carries its command-line help, extra flag names
(`-tp`), environment variables and numeric range. From those fields:
- `check_ranges(obj)` validates every numeric field in `__post_init__` with one line
  ("port must be 1-65535"),
- `cli_parameters(cls)` builds the `inspect.Parameter`s of a Typer command (flag `--max-model-len`
  for field `max_model_len`, the field's default, its help), and `command(...)` turns them into
  a function Typer can mount. The CLI list is never typed a second time.

Typer is imported only when a command is built, so configs stay free of CLI imports.
"""

import dataclasses
import inspect
import types
import typing
from collections.abc import Callable, Iterable

from onenode.errors import ConfigError

_NO_DEFAULT = dataclasses.MISSING


def option(default=_NO_DEFAULT, *, help: str = "", flags: tuple[str, ...] = (),
           envvar: tuple[str, ...] = (), range: tuple[float | None, float | None] | None = None,
           cli: bool = True, hidden: bool = False, secret: bool = False) -> typing.Any:
    """A dataclass field with CLI metadata. `flags`: the full flag spelling(s) replacing the
    derived `--field-name` (e.g. ("--tensor-parallel-size", "-tp")); `range`: (low, high),
    either end None for open; `cli=False` keeps the field off the command line; `secret=True`
    keeps the value out of the dataclass's repr (and so out of logs)."""
    meta = {"help": help, "flags": tuple(flags), "envvar": tuple(envvar), "range": range,
            "cli": cli, "hidden": hidden}
    if isinstance(default, list | dict | set):
        raise TypeError("use a tuple default for a frozen config")
    return dataclasses.field(default=default, metadata=meta, repr=not secret)


def check_ranges(obj) -> None:
    """Raise ConfigError for the first numeric field outside its declared range."""
    for f in dataclasses.fields(obj):
        bounds = f.metadata.get("range")
        value = getattr(obj, f.name)
        if bounds is None or value is None:
            continue
        low, high = bounds
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(f"{f.name} must be {_describe(low, high)} (got {value})")


def _describe(low, high) -> str:
    if low is not None and high is not None:
        return f"{low}-{high}"
    return f">= {low}" if low is not None else f"<= {high}"


def flag_names(f: dataclasses.Field, is_bool: bool = False) -> tuple[str, ...]:
    """Declared flags, else `--field-name` (and `--no-field-name` for a bool, as vLLM's
    BooleanOptionalAction)."""
    if f.metadata.get("flags"):
        return f.metadata["flags"]
    flag = f.name.replace("_", "-")
    return (f"--{flag}/--no-{flag}",) if is_bool else (f"--{flag}",)


def cli_parameters(cls, only: Iterable[str] | None = None,
                   exclude: Iterable[str] = ()) -> list[inspect.Parameter]:
    """One Typer parameter per field of `cls` (in field order; `only` also sets the order)."""
    import typer

    by_name = {f.name: f for f in dataclasses.fields(cls)}
    names = list(only) if only is not None else list(by_name)
    hints = typing.get_type_hints(cls)
    params = []
    for name in names:
        f = by_name[name]
        if name in exclude or not f.metadata.get("cli", True):
            continue
        meta, annotation = f.metadata, _cli_type(hints[name])
        if f.default is _NO_DEFAULT:
            info = typer.Argument(..., help=meta.get("help") or None)
        else:
            info = typer.Option(_cli_default(f.default), *flag_names(f, annotation is bool),
                                help=meta.get("help") or None,
                                envvar=list(meta["envvar"]) or None,
                                show_envvar=bool(meta.get("envvar")),
                                hidden=meta.get("hidden", False))
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=info,
                                        annotation=annotation))
    return params


def _cli_type(hint):
    """Typer knows list[...] for repeatable options, not tuple[..., ...]."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _cli_type(inner[0]) | None if len(inner) == 1 else hint
    if typing.get_origin(hint) is tuple:
        return list[args[0]]
    return hint


def _cli_default(default):
    return list(default) if isinstance(default, tuple) else default


def command(name: str, doc: str, params: list[inspect.Parameter],
            body: Callable[..., typing.Any]) -> Callable[..., typing.Any]:
    """A function Typer can mount: signature `params`, docstring `doc`; calls body(**kwargs)."""
    def run(**kwargs):
        return body(**kwargs)

    run.__name__ = run.__qualname__ = name
    run.__doc__ = doc
    run.__signature__ = inspect.Signature(params)
    run.__annotations__ = {p.name: p.annotation for p in params}
    return run


def from_cli(cls, values: dict, **extra):
    """Build `cls` from CLI values (lists back to tuples), ignoring keys that are not fields."""
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names}
    return cls(**kwargs, **extra)
