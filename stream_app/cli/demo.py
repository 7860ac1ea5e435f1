"""``streamrec demo``: broker + data + model + worker + live recommendations, one command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from stream_app.cli.common import (
    broker_option,
    cli,
    command_settings,
    console,
    input_file,
    registry_option,
)
from stream_app.cli.options import setting


@cli.command()
@setting("demo.duration", "--duration")
@setting("demo.rate", "--rate")
@setting("demo.workdir", "--workdir")
@input_file("--items", "items_path", "Catalogue JSONL [default: a synthetic shop].")
@input_file("--events", "events_path", "Events JSONL [default: the synthetic shop's].")
@setting("demo.users", "--users")
@setting("demo.epochs", "--epochs")
@setting("serving.web_port", "--web-port")
@broker_option
@click.pass_context
def demo(ctx: click.Context, items_path: Path | None, events_path: Path | None, **_: Any) -> None:
    """Start what is missing (Kafka, data, model, worker), stream events, show live recs."""
    from stream_app.demo import run_demo

    settings = command_settings(ctx)
    settings = settings.with_overrides(registry_dir=str(settings.demo.workdir / "registry"))
    try:
        run_demo(settings, console, items_path, events_path)
    except Exception as exc:  # show the reason, not a traceback
        raise click.ClickException(str(exc)) from exc


@cli.command()
@setting("demo.rate", "--rate")
@setting("demo.workdir", "--workdir")
@input_file("--items", "items_path", "Catalogue JSONL [default: a synthetic shop].")
@input_file("--events", "events_path", "Events JSONL [default: the synthetic shop's].")
@setting("demo.users", "--users")
@setting("demo.epochs", "--epochs")
@registry_option
@broker_option
@click.pass_context
def seed(ctx: click.Context, items_path: Path | None, events_path: Path | None, **_: Any) -> None:
    """Seed a stack: a first model if the registry has none, the catalogue, a steady event
    stream until stopped (the compose stack's seed service)."""
    from stream_app.seed import run_seed

    settings = command_settings(ctx)
    try:
        run_seed(settings, console, items_path, events_path)
    except KeyboardInterrupt:
        console.print("· seed stopped")
    except (ValueError, OSError) as exc:  # bad input files, an unwritable registry: one line
        raise click.ClickException(str(exc)) from exc
