"""``streamrec model list|show|promote|rollback``: read the registry, move CURRENT."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import click
from rich.table import Table

from schemas.settings import Settings
from stream_app.cli.common import (
    broker_option,
    cli,
    command_settings,
    console,
    json_option,
    out,
    print_json,
    registry_option,
)
from stream_app.registry import Registry, RegistryError


@cli.group()
def model() -> None:
    """Inspect the model registry; promote or roll back the served version."""


def _registry(ctx: click.Context) -> tuple[Settings, Registry]:
    settings = command_settings(ctx)
    return settings, Registry(settings.registry_dir)


@model.command("list")
@registry_option
@json_option
@click.pass_context
def model_list(ctx: click.Context, as_json: bool, **_options: Any) -> None:
    """Versions, newest last; * marks CURRENT."""
    _, reg = _registry(ctx)
    current = reg.current()
    rows = [
        {
            "version": m.version,
            "current": m.version == current,
            "status": m.status,
            "parent": m.parent,
            "created_at": m.created_at.isoformat(),
            "ndcg@10": m.metric("streamrec", "ndcg@10"),
        }
        for m in reg.manifests()
    ]
    if as_json:
        print_json({"current": current, "versions": rows})
        return
    table = Table(title=f"registry {reg.root}")
    for col in ("", "version", "status", "parent", "created_at", "test ndcg@10"):
        table.add_column(col)
    for r in rows:
        nd = r["ndcg@10"]
        table.add_row(
            "*" if r["current"] else "",
            str(r["version"]),
            str(r["status"]),
            str(r["parent"] or "-"),
            str(r["created_at"]),
            f"{nd:.4f}" if isinstance(nd, float) else "-",
        )
    out.print(table)


@model.command("show")
@click.argument("version", required=False)
@registry_option
@click.pass_context
def model_show(ctx: click.Context, version: str | None, **_options: Any) -> None:
    """Print a version's manifest (default: CURRENT) and verify its files."""
    _, reg = _registry(ctx)
    try:
        version = version or reg.require_current()
        manifest = reg.manifest(version)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    problems = reg.verify(version)
    print_json({**manifest.model_dump(mode="json"), "verified": not problems, "problems": problems})


def notify_workers(
    settings: Settings,
    version: str,
    parent: str | None,
    action: Literal["publish", "promote", "rollback"],
) -> None:
    """Best effort: workers also watch CURRENT, so a broker outage only delays the switch."""
    from stream_app.finetune.shadow import notify

    try:
        asyncio.run(notify(settings, version, parent, action, {}))
        console.print(f"notified workers on {settings.topics.model_updates}")
    except Exception as exc:  # noqa: BLE001 - the file pointer already moved
        console.print(
            f"[yellow]could not notify via Kafka ({exc}); workers polling CURRENT "
            "will still switch[/yellow]"
        )


@model.command("promote")
@click.argument("version")
@registry_option
@broker_option
@click.pass_context
def model_promote(ctx: click.Context, version: str, **_options: Any) -> None:
    """Make VERSION current (files verified first) and notify workers."""
    settings, reg = _registry(ctx)
    previous = reg.current()
    try:
        reg.promote(version)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"CURRENT: {previous} -> {version}")
    notify_workers(settings, version, previous, "promote")


@model.command("rollback")
@registry_option
@broker_option
@click.pass_context
def model_rollback(ctx: click.Context, **_options: Any) -> None:
    """Move CURRENT back to the previously served version and notify workers."""
    settings, reg = _registry(ctx)
    try:
        old, new = reg.rollback()
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"CURRENT: {old} -> {new} (rolled back)")
    notify_workers(settings, new, old, "rollback")
