"""``streamrec train`` and ``streamrec model list|show|promote|rollback``.

``train`` imports torch lazily (the [train] extra); ``model`` commands only read the registry.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from stream_app.cli.common import (
    broker_option,
    cli,
    console,
    log_options,
    print_json,
    settings_from,
)

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


@cli.command()
@log_options
@click.option("--split", type=click.Choice(["time", "loo"]), default="time", show_default=True)
@click.option(
    "--epochs", type=int, default=20, show_default=True, help="Max epochs (early stopping)."
)
@click.option("--patience", type=int, default=3, show_default=True)
@click.option(
    "--encoder-mode",
    default="frozen",
    show_default=True,
    help="Transfer learning: frozen | top-N | full.",
)
@click.option(
    "--encoder-steps",
    type=int,
    default=100,
    show_default=True,
    help="Contrastive next-item steps when the encoder is tuned.",
)
@click.option("--k", type=int, default=None, help="Interest slots [STREAMREC_INTERESTS__K].")
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--weight-decay", type=float, default=1e-4, show_default=True)
@click.option("--dropout", type=float, default=0.1, show_default=True)
@click.option("--batch-size", type=int, default=512, show_default=True)
@click.option(
    "--negatives",
    type=int,
    default=0,
    show_default=True,
    help="Shared negatives per batch; 0 = auto (64 up to 5,000 items, else 128).",
)
@click.option("--dim", type=int, default=64, show_default=True, help="Item representation size.")
@click.option("--no-text", is_flag=True, help="Ablation: item ids only, no text encoder.")
@click.option("--no-ids", is_flag=True, help="Ablation: text only, no id embeddings.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--model-path", default=None, help="Encoder path [STREAMREC_MODEL_PATH].")
@click.option("--no-publish", is_flag=True, help="Train and test only.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.pass_context
def train(
    ctx: click.Context,
    items_path: Path,
    events_path: Path,
    registry: Path | None,
    split: str,
    epochs: int,
    patience: int,
    encoder_mode: str,
    encoder_steps: int,
    k: int | None,
    lr: float,
    weight_decay: float,
    dropout: float,
    batch_size: int,
    negatives: int,
    dim: int,
    no_text: bool,
    no_ids: bool,
    seed: int,
    model_path: str | None,
    no_publish: bool,
    as_json: bool,
) -> None:
    """Train the multi-task ranker, test it against baselines, export to ONNX, publish."""
    from model_export.pipeline import TrainOptions, run_training
    from model_export.train import TrainConfig
    from stream_app.cli.progress import TrainProgress

    settings = settings_from(
        ctx, registry_dir=registry, model_path=model_path, **{"interests.k": k}
    )
    opts = TrainOptions(
        split=split,
        encoder_mode=encoder_mode,
        encoder_steps=encoder_steps,
        d=dim,
        dropout=dropout,
        use_text=not no_text,
        use_ids=not no_ids,
        train=TrainConfig(
            epochs=epochs,
            patience=patience,
            lr=lr,
            weight_decay=weight_decay,
            batch_size=batch_size,
            negatives=negatives,
            seed=seed,
        ),
    )
    with TrainProgress(console) as hooks:
        try:
            report = run_training(
                settings,
                items_path,
                events_path,
                opts,
                hooks.hooks,
                settings.registry_dir,
                publish=not no_publish,
            )
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        print_json({"protocol": split, **report})
        return
    console.print(metrics_table(f"test ({split} split)", report["systems"]))
    tr = report["train"]
    console.print(
        f"epochs run {tr['epochs_run']} (best {tr['best_epoch']}, early stop "
        f"{tr['stopped_early']}), total {report['seconds']} s"
    )
    if "version" in report:
        console.print(f"published {report['version']} to {settings.registry_dir} (CURRENT)")


@cli.group()
def model() -> None:
    """Inspect the model registry; promote or roll back the served version."""


def _registry(ctx: click.Context, registry: Path | None):  # type: ignore[no-untyped-def]
    from stream_app.registry import Registry

    settings = settings_from(ctx, registry_dir=registry)
    return settings, Registry(settings.registry_dir)


registry_option = click.option(
    "--registry",
    type=click.Path(path_type=Path),
    default=None,
    help="Registry dir [STREAMREC_REGISTRY_DIR].",
)


@model.command("list")
@registry_option
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def model_list(ctx: click.Context, registry: Path | None, as_json: bool) -> None:
    """Versions, newest last; * marks CURRENT."""
    _, reg = _registry(ctx, registry)
    current = reg.current()
    rows = []
    for v in reg.versions():
        m = reg.manifest(v)
        rows.append(
            {
                "version": v,
                "current": v == current,
                "status": m.get("status"),
                "parent": m.get("parent"),
                "created_at": m.get("created_at"),
                "ndcg@10": m.get("metrics", {}).get("streamrec.ndcg@10"),
            }
        )
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
            r["version"],
            str(r["status"]),
            str(r["parent"] or "-"),
            str(r["created_at"]),
            f"{nd:.4f}" if isinstance(nd, float) else "-",
        )
    console.print(table)


@model.command("show")
@click.argument("version", required=False)
@registry_option
@click.pass_context
def model_show(ctx: click.Context, version: str | None, registry: Path | None) -> None:
    """Print a version's manifest (default: CURRENT) and verify its files."""
    _, reg = _registry(ctx, registry)
    version = version or reg.current()
    if version is None:
        msg = f"registry {reg.root} has no CURRENT version"
        raise click.ClickException(msg)
    from stream_app.registry import RegistryError

    try:
        manifest = reg.manifest(version)
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    problems = reg.verify(version)
    print_json({**manifest, "verified": not problems, "problems": problems})


async def _notify(
    settings: Any, version: str, parent: str | None, action: str, metrics: dict[str, float]
) -> None:
    from aiokafka import AIOKafkaProducer

    from schemas.recommendations import ModelUpdate

    notice = ModelUpdate(
        model_version=version,
        parent_version=parent,
        action=action,
        published_at=datetime.now(UTC),
        metrics=metrics,
    )
    producer = AIOKafkaProducer(**settings.kafka.client_kwargs(), request_timeout_ms=5000)
    await asyncio.wait_for(producer.start(), 10)
    try:
        await producer.send_and_wait(
            settings.topics.model_updates, notice.model_dump_json().encode(), key=b"model"
        )
    finally:
        await producer.stop()


def notify_workers(
    settings: Any,
    version: str,
    parent: str | None,
    action: str,
    metrics: dict[str, float] | None = None,
) -> None:
    """Best effort: workers also watch CURRENT, so a broker outage only delays nothing."""
    try:
        asyncio.run(_notify(settings, version, parent, action, metrics or {}))
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
def model_promote(
    ctx: click.Context, version: str, registry: Path | None, broker: str | None
) -> None:
    """Make VERSION current (files verified first) and notify workers."""
    from stream_app.registry import RegistryError

    settings, reg = _registry(ctx, registry)
    settings = settings.with_overrides(**{"kafka.broker": broker})
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
def model_rollback(ctx: click.Context, registry: Path | None, broker: str | None) -> None:
    """Move CURRENT back to the previously served version and notify workers."""
    from stream_app.registry import RegistryError

    settings, reg = _registry(ctx, registry)
    settings = settings.with_overrides(**{"kafka.broker": broker})
    try:
        old, new = reg.rollback()
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    console.print(f"CURRENT: {old} -> {new} (rolled back)")
    notify_workers(settings, new, old, "rollback")
