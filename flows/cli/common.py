"""What every ``reskd`` command shares: the console, errors, tables, and the one declaration of the options
that build the config (``--config/-c``, ``--set/-o``, options generated from config fields).

Command modules import this module only; :mod:`flows.cli.main` registers them on the root app.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import typer
from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table

from reskd_core.config import Config

console = Console()

ConfigOption = Annotated[
    str | None,
    typer.Option("--config", "-c", help="recipe name under configs/ or a YAML path to start from"),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-o", help="key.path=value override of any config field (repeatable)"),
]
TrackingOption = Annotated[
    str | None, typer.Option("--tracking-uri", help="MLflow tracking URI (default: tracking.uri)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="print the result as JSON")]


def fail(message: str) -> typing.NoReturn:
    """Print ``message`` as an error and exit with status 2 (a bad configuration or input)."""
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


def validation_message(e: ValidationError) -> str:
    """``'invalid config: kd.weight: ...; optim.lr: ...'``: each bad field named by its dotted path."""
    parts = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()]
    return "invalid config: " + "; ".join(parts)


def command_config(
    recipe: str | None, overrides: list[str] | None = None, values: dict[str, Any] | None = None
) -> Config:
    """The command's config, built once: the recipe (None: the defaults), the ``--set`` overrides, then
    the options that name config fields (``values``, dotted keys; None values are options not given),
    local paths pinned. A bad recipe or value exits 2 naming the field, before any work."""
    from flows.run_config import build_config

    given = {k: v for k, v in (values or {}).items() if v is not None}
    try:
        return build_config(recipe, overrides, given)
    except ValidationError as e:
        fail(validation_message(e))
    except ValueError as e:
        fail(str(e))


def parse_ints(value: str, what: str = "resolution") -> list[int]:
    """``'224,112'`` -> ``[224, 112]`` with a clear error for anything else."""
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(
            f"{what} must be a comma-separated list of integers, got {value!r}"
        ) from None
    if not out or any(v <= 0 for v in out):
        raise typer.BadParameter(f"{what} must hold positive integers, got {value!r}")
    return out


def print_table(rows: list[dict], columns: list[str], title: str | None = None) -> None:
    """``rows`` as a rich table of ``columns`` (numbers right-aligned)."""
    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="right" if rows and isinstance(rows[0].get(c), (int, float)) else "left")
    for row in rows:
        table.add_row(*[str(row.get(c, "")) for c in columns])
    console.print(table)


# ---------------------------------------------------------------- options generated from config fields

F = TypeVar("F", bound=Callable[..., Any])


def field_options(
    section: str,
    model: type[BaseModel],
    *,
    skip: tuple[str, ...] = (),
    aliases: dict[str, str] | None = None,
) -> Callable[[F], F]:
    """Give a command one ``--<field>`` option per field of ``model`` (the config section ``section``):
    type, default and description come from the pydantic field, so they are written once, in the config.

    The command declares ``**fields``; it receives every generated option there, None when not given
    (the recipe's value then stands), keyed ``'<section>.<field>'`` for :func:`command_config`.
    ``aliases`` adds another option name to a field (``{'timeout_s': '--timeout'}``).
    """

    def decorate(fn: F) -> F:
        sig = inspect.signature(fn, eval_str=True)
        fixed = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
        generated = [
            inspect.Parameter(
                f"{section}__{name}",
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=_option(section, name, field, (aliases or {}).get(name)),
            )
            for name, field in model.model_fields.items()
            if name not in skip
        ]

        def command(*args: Any, **kwargs: Any) -> Any:
            values = {
                k.replace("__", ".", 1): kwargs.pop(k) for k in list(kwargs) if k.startswith(f"{section}__")
            }
            return fn(*args, **kwargs, **values)

        command.__name__, command.__doc__, command.__module__ = fn.__name__, fn.__doc__, fn.__module__
        command.__signature__ = sig.replace(parameters=fixed + generated)  # type: ignore[attr-defined]
        return typing.cast(F, command)

    return decorate


def _option(section: str, name: str, field: Any, alias: str | None) -> Any:
    """``Annotated[type | None, typer.Option(...)]`` for one pydantic field."""
    kind = _plain_type(field.annotation)
    choices = _literal_values(field.annotation)
    default = field.get_default(call_default_factory=True)
    words = [field.description or f"{section}.{name}"]
    if choices:  # checked by the config, so a bad value's message names the field
        words.append("one of " + " | ".join(map(str, choices)))
    limits = _limits(field.metadata)
    if limits:
        words.append(limits)
    if default is not None:
        words.append(f"default {default}")
    names = [f"--{name.replace('_', '-')}", *([alias] if alias else [])]
    option = typer.Option(*names, help="; ".join(words), rich_help_panel=f"{section}.* settings")
    return Annotated[kind | None, option]


def _plain_type(annotation: Any) -> type:
    """The option's type: ``int``/``float``/``bool``/``str`` (Literals and ``X | None`` as their values')."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is Literal:
        return type(args[0])
    if args:  # X | None
        return _plain_type(args[0])
    return annotation


def _literal_values(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is Literal:
        return list(typing.get_args(annotation))
    return [v for a in typing.get_args(annotation) for v in _literal_values(a)]


_SIGNS = {Ge: ">=", Gt: ">", Le: "<=", Lt: "<"}


def _limits(metadata: list[Any]) -> str:
    """``'>= 2, <= 16'`` from a field's constraints (``Ge(2)`` holds its bound as ``.ge``)."""
    bounds = [(_SIGNS[type(m)], getattr(m, type(m).__name__.lower())) for m in metadata if type(m) in _SIGNS]
    return ", ".join(f"{sign} {bound}" for sign, bound in bounds)
