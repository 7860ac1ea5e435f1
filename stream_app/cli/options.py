"""CLI options that are settings: every option of every command sets one settings path
(``--epochs`` -> ``training.epochs``), so ``STREAMREC_TRAINING__EPOCHS`` sets the same thing.
An option's type, choices, help and default come from the ``Settings`` field; a value given on
the command line overrides the environment for that run.

The only options that are not settings are per-run input/output arguments (``EXEMPT``: files
to read or write, the topic a debugging command reads or writes, machine output).
"""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import click
from pydantic import BeforeValidator
from pydantic.fields import FieldInfo

from schemas.settings import Settings, env_name, setting_field

F = TypeVar("F", bound=Callable[..., Any])

# option name -> why it is no setting (tests/unit/test_cli_settings.py holds every command to it)
EXEMPT = {
    "as_json": "machine output for this run (one JSON object on stdout)",
    "items_path": "input file of this run (catalogue JSONL)",
    "events_path": "input file of this run (events JSONL)",
    "out_dir": "output directory of this run",
    "report_dir": "output directory of this run (report.md, metrics.json, plots)",
    "topic": "the topic this one produce/consume run writes or reads",
    "limit": "how many messages this one consume run prints",
    "from_beginning": "where this one consume run starts reading",
}


class SettingOption(click.Option):
    """A click option bound to one settings path (see the module docstring)."""

    def __init__(
        self, param_decls: list[str], *, setting: str, invert: bool = False, **attrs: Any
    ) -> None:
        field = setting_field(setting)
        text = attrs.pop("help", None) or field.description or ""
        if invert:
            attrs["help"] = f"{text} [sets {env_name(setting)}=false]"
        else:
            default = _shown(field.get_default(call_default_factory=True))
            attrs["help"] = f"{text} [{env_name(setting)}; default {default}]"
        attrs.setdefault("default", None)
        attrs["show_default"] = False
        is_switch = attrs.get("is_flag") or any("/" in d for d in param_decls)
        if "type" not in attrs and not is_switch and not attrs.get("multiple"):
            attrs["type"] = _click_type(field)
        super().__init__(param_decls, **attrs)
        self.setting, self.invert = setting, invert


def setting(path: str, *decls: str, invert: bool = False, **attrs: Any) -> Callable[[F], F]:
    """``@setting("training.epochs", "--epochs")``; ``invert=True`` for a flag that turns a
    boolean setting off (``--no-text`` -> ``training.use_text = false``)."""
    return click.option(*decls, cls=SettingOption, setting=path, invert=invert, **attrs)


def overrides(ctx: click.Context) -> dict[str, Any]:
    """{settings path: value} of the setting options given on this command's line."""
    out: dict[str, Any] = {}
    for param in ctx.command.params:
        if not isinstance(param, SettingOption):
            continue
        value = ctx.params.get(param.name or "")
        if value is None or (param.multiple and not value):
            continue
        out[param.setting] = (not value) if param.invert else value
    return out


def _shown(value: Any) -> str:
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value) or "none"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "none"
    return str(value)


def _click_type(field: FieldInfo) -> Any:
    if any(isinstance(m, BeforeValidator) for m in field.metadata):
        return str  # parsed by the field's validator (durations, lists)
    ann = field.annotation
    if get_origin(ann) in (Union, types.UnionType):
        args = [a for a in get_args(ann) if a is not type(None)]
        ann = args[0] if len(args) == 1 else ann
    if get_origin(ann) is Annotated:
        return str  # a validated text value (a duration)
    if get_origin(ann) is Literal:
        return click.Choice([str(a) for a in get_args(ann)])
    if ann is bool:
        return click.BOOL
    if ann in (int, float, str):
        return ann
    if ann is Path:
        return click.Path(path_type=Path)
    return str


def command_settings(ctx: click.Context, base: Settings) -> Settings:
    """``base`` with this command's setting options applied (validated)."""
    return base.with_overrides(**overrides(ctx))


def walk_options(group: click.Group, prefix: str = "streamrec") -> list[tuple[str, click.Option]]:
    """(command path, option) for every option of every command below ``group``."""
    out: list[tuple[str, click.Option]] = []
    for name, cmd in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        if isinstance(cmd, click.Group):
            out += walk_options(cmd, path)
            continue
        out += [(path, p) for p in cmd.params if isinstance(p, click.Option)]
    return out


def setting_flags(group: click.Group) -> dict[str, list[str]]:
    """settings path -> the flags that set it (``streamrec train --epochs``), for the README."""
    flags: dict[str, list[str]] = {}
    for path, option in walk_options(group):
        if isinstance(option, SettingOption):
            flags.setdefault(option.setting, []).append(f"{path} {option.opts[0]}")
    return flags
