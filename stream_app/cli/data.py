"""``streamrec generate`` (synthetic world) and ``streamrec convert movielens|recbole``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from stream_app.cli.common import cli, command_settings, console, json_option, out, print_json
from stream_app.cli.options import setting
from stream_app.datagen.convert import convert_movielens, convert_recbole
from stream_app.datagen.synthetic import generate_world

ProgressFn = Callable[[str, int, int | None], None]

out_option = click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Output directory (created if missing).",
)


@contextmanager
def _progress(enabled: bool = True) -> Iterator[ProgressFn]:
    """A rich progress bar (stderr) with one task per stage name; yields the callback."""
    bar = Progress(
        TextColumn("{task.description:>20}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not enabled,
    )
    tasks: dict[str, TaskID] = {}

    def update(stage: str, done: int, total: int | None) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(stage, total=total)
        bar.update(tasks[stage], completed=done, total=total)

    with bar:
        yield update


def _show(title: str, summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(summary)
        return
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in summary.items():
        if isinstance(value, dict):
            text = "\n".join(f"{k}: {_fmt(v)}" for k, v in value.items()) or "-"
        else:
            text = _fmt(value)
        table.add_row(key, text)
    out.print(table)


def _fmt(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, list):
        return "\n".join(str(v) for v in value) if value else "-"
    return str(value)


def _run(step: Callable[[ProgressFn], dict[str, Any]], as_json: bool) -> dict[str, Any]:
    try:
        with _progress(enabled=not as_json) as update:
            return step(update)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


@cli.command("generate")
@out_option
@setting("datagen.users", "--users")
@setting("datagen.items", "--items")
@setting("datagen.events", "--events")
@setting("datagen.seed", "--seed")
@setting("datagen.drift_at", "--drift-at")
@json_option
@click.pass_context
def generate(ctx: click.Context, out_dir: Path, as_json: bool, **_: Any) -> None:
    """Generate a synthetic world: items.jsonl, events.jsonl and the ground truth world.json."""
    g = command_settings(ctx).datagen
    summary = _run(
        lambda p: generate_world(
            out_dir, g.users, g.items, g.events, g.seed, g.drift_at, progress=p
        ),
        as_json,
    )
    _show(f"synthetic world in {out_dir}", summary, as_json)


@cli.group("convert")
def convert() -> None:
    """Convert a public dataset into items.jsonl + events.jsonl (ratings -> click/purchase)."""


threshold_option = setting("rating_threshold", "--rating-threshold")


@convert.command("movielens")
@click.argument("src", type=click.Path(path_type=Path))
@out_option
@threshold_option
@json_option
@click.pass_context
def convert_ml(ctx: click.Context, src: Path, out_dir: Path, as_json: bool, **_: Any) -> None:
    """SRC: a MovieLens directory (ml-100k, ml-1m or ml-latest[-small]); format detected."""
    threshold = command_settings(ctx).rating_threshold
    summary = _run(lambda p: convert_movielens(src, out_dir, threshold, progress=p), as_json)
    _show(f"{summary['format']} -> {out_dir}", summary, as_json)


@convert.command("recbole")
@click.argument("src", type=click.Path(path_type=Path))
@out_option
@threshold_option
@json_option
@click.pass_context
def convert_rb(ctx: click.Context, src: Path, out_dir: Path, as_json: bool, **_: Any) -> None:
    """SRC: a RecBole dataset directory with <name>.inter (and optional <name>.item)."""
    threshold = command_settings(ctx).rating_threshold
    summary = _run(lambda p: convert_recbole(src, out_dir, threshold, progress=p), as_json)
    _show(f"recbole -> {out_dir}", summary, as_json)
