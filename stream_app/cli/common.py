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

from schemas.settings import Settings

console = Console(stderr=True)


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

    Every flag is also a setting: STREAMREC_<NAME> (nested: STREAMREC_KAFKA__BROKER).
    """
    ctx.obj = CliState(settings=load_settings())


def settings_from(ctx: click.Context, **dotted: Any) -> Settings:
    """Settings from the environment with this command's flags applied (None = not given)."""
    base: Settings = ctx.obj.settings if ctx.obj else load_settings()
    try:
        return base.with_overrides(**dotted)
    except ValidationError as exc:
        lines = [f"  {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        msg = "invalid option:\n" + "\n".join(lines)
        raise click.ClickException(msg) from None


def broker_option(f: Any) -> Any:
    return click.option(
        "--broker",
        default=None,
        metavar="HOST:PORT",
        help="Kafka bootstrap servers [STREAMREC_KAFKA__BROKER, default localhost:9092].",
    )(f)


def log_options(f: Any) -> Any:
    """``--items``, ``--events`` (required JSONL files) and ``--registry``: the inputs of every
    command that trains on or evaluates an event log."""
    existing = click.Path(exists=True, path_type=Path)
    f = click.option(
        "--registry",
        type=click.Path(path_type=Path),
        default=None,
        help="Registry dir [STREAMREC_REGISTRY_DIR].",
    )(f)
    f = click.option("--events", "events_path", required=True, type=existing)(f)
    return click.option("--items", "items_path", required=True, type=existing)(f)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()
