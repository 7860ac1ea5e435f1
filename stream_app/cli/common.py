"""Shared CLI plumbing: the root group, settings from env + flags, console helpers."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from schemas.settings import Settings, unknown_env
from stream_app.cli.options import SettingOption, overrides, setting

console = Console(stderr=True)  # logs, progress, status: stderr
out = Console()  # data (tables; print_json for machines): stdout, so `> file` keeps it


@dataclass
class CliState:
    settings: Settings


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        msg = "invalid STREAMREC_* settings:\n" + "\n".join(lines)
        raise click.ClickException(msg) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="streamrec", prog_name="streamrec")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """streamrec: real-time multi-interest recommendations over Kafka.

    Every flag is also a setting: STREAMREC_<SECTION>__<NAME> (e.g. STREAMREC_KAFKA__BROKER,
    STREAMREC_TRAINING__EPOCHS); each flag's help names its variable.
    """
    warn_unknown_env()
    ctx.obj = CliState(settings=load_settings())


def warn_unknown_env() -> None:
    """One warning on stderr naming every ``STREAMREC_*`` variable that sets nothing."""
    unknown = unknown_env()
    if unknown:
        click.echo(
            f"warning: unknown setting variable(s): {', '.join(unknown)} "
            "(the README's settings table lists every STREAMREC_* name)",
            err=True,
        )


def settings_from(
    ctx: click.Context, flags: dict[str, str] | None = None, **dotted: Any
) -> Settings:
    """Settings from the environment with ``dotted`` overrides applied (None = not given);
    an invalid value names its flag (``flags``: settings path -> flag) and its setting."""
    base: Settings = ctx.obj.settings if ctx.obj else load_settings()
    try:
        return base.with_overrides(**dotted)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            path = ".".join(map(str, e["loc"]))
            flag = (flags or {}).get(path)
            lines.append(f"  {flag} ({path}): {e['msg']}" if flag else f"  {path}: {e['msg']}")
        msg = "invalid option:\n" + "\n".join(lines)
        raise click.ClickException(msg) from None


def command_settings(ctx: click.Context) -> Settings:
    """Settings from the environment with this command's setting options applied."""
    flags = {p.setting: p.opts[0] for p in ctx.command.params if isinstance(p, SettingOption)}
    return settings_from(ctx, flags, **overrides(ctx))


broker_option = setting("kafka.broker", "--broker", metavar="HOST:PORT")
registry_option = setting("registry_dir", "--registry")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine output on stdout.")


def input_file(flag: str, name: str, help: str, required: bool = False) -> Any:
    """An existing input file of this run (a per-run argument, not a setting)."""
    existing = click.Path(exists=True, dir_okay=False, path_type=Path)
    return click.option(flag, name, type=existing, default=None, required=required, help=help)


def log_options(f: Any) -> Any:
    """``--items``, ``--events`` (required JSONL files) and ``--registry``: the inputs of every
    command that trains on or evaluates an event log."""
    f = registry_option(f)
    f = input_file("--events", "events_path", "Events JSONL.", required=True)(f)
    return input_file("--items", "items_path", "Catalogue JSONL.", required=True)(f)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()


TABLE_METRICS = ("hr@10", "ndcg@10", "mrr", "auc_click", "auc_purchase")


def metrics_table(
    title: str, systems: dict[str, dict[str, float]], columns: tuple[str, ...] = TABLE_METRICS
) -> Table:
    table = Table(title=title)
    table.add_column("system")
    for c in columns:
        table.add_column(c, justify="right")
    for name, row in systems.items():
        table.add_row(
            name, *(f"{row[c]:.4f}" if isinstance(row.get(c), float) else "-" for c in columns)
        )
    return table
