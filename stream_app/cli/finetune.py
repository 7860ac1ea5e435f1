"""``streamrec finetune``: the incremental fine-tuning side job (a separate process)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import click

from schemas.items import CatalogItem
from schemas.reports import RoundResult
from stream_app.cli.common import broker_option, cli, console, print_json, settings_from
from stream_app.cli.model import metrics_table


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*", text)
    if not m:
        msg = f"expected a duration like 90s, 10m, 2h or 1d, got {text!r}"
        raise click.BadParameter(msg)
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2) or "s"]


@cli.command()
@click.option(
    "--registry",
    type=click.Path(path_type=Path),
    default=None,
    help="Registry dir [STREAMREC_REGISTRY_DIR].",
)
@click.option("--every", default="10m", show_default=True, help="Round interval (90s, 10m, 2h).")
@click.option("--every-events", type=int, default=None, help="Or: a round per N new events.")
@click.option("--once", is_flag=True, help="Consume what is there, run one round, exit.")
@click.option(
    "--window",
    default="2h",
    show_default=True,
    help="Recent window kept in full (event time); older events are reservoir-sampled.",
)
@click.option("--reservoir", type=int, default=20000, show_default=True)
@click.option(
    "--tolerance",
    type=float,
    default=0.01,
    show_default=True,
    help="Max drop vs current on NDCG@10 and both AUCs (with --shadow: also on the "
    "online hit rate).",
)
@click.option(
    "--min-events",
    type=int,
    default=1000,
    show_default=True,
    help="New events needed before a round.",
)
@click.option(
    "--events",
    "events_file",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Offline: take events from a JSONL file instead of Kafka.",
)
@click.option(
    "--items",
    "items_file",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Catalogue JSONL [default: read the items topic].",
)
@click.option(
    "--encoder-mode",
    default="frozen",
    show_default=True,
    help="frozen | top-N | full (top-N re-tunes the top encoder layers each round).",
)
@click.option("--epochs", type=int, default=5, show_default=True)
@click.option(
    "--buffer-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="[default: DATA_DIR/finetune-buffer]",
)
@click.option(
    "--shadow",
    "shadow",
    type=int,
    default=None,
    metavar="N",
    help="Before promoting a gated candidate, have each worker score it beside the "
    "served model on its next N live events; promote only if its online hit "
    "rate >= the served one's - tolerance.",
)
@click.option(
    "--shadow-wait",
    default="10m",
    show_default=True,
    help="How long to wait for the workers' shadow reports.",
)
@click.option(
    "--shadow-workers",
    type=int,
    default=1,
    show_default=True,
    help="Reports that end the wait early (later ones get a 2 s grace).",
)
@click.option(
    "--corrupt-labels",
    is_flag=True,
    hidden=True,
    help="Drill: train on shuffled targets; the gate must refuse the result.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per round on stdout.")
@broker_option
@click.pass_context
def finetune(
    ctx: click.Context,
    registry: Path | None,
    every: str,
    every_events: int | None,
    once: bool,
    window: str,
    reservoir: int,
    tolerance: float,
    min_events: int,
    events_file: Path | None,
    items_file: Path | None,
    encoder_mode: str,
    epochs: int,
    buffer_dir: Path | None,
    shadow: int | None,
    shadow_wait: str,
    shadow_workers: int,
    corrupt_labels: bool,
    as_json: bool,
    broker: str | None,
) -> None:
    """Fine-tune the served model on new events; publish only what passes the gate."""
    from model_export.finetune.rounds import run_round
    from model_export.pipeline import TrainOptions
    from model_export.train import TrainConfig
    from stream_app.cli.progress import TrainProgress
    from stream_app.datagen.jsonl import load_items
    from stream_app.finetune.buffer import EventBuffer
    from stream_app.finetune.job import FineTuneJob, JobOptions
    from stream_app.registry import Registry

    settings = settings_from(ctx, registry_dir=registry, **{"kafka.broker": broker})
    buf = EventBuffer(
        buffer_dir or settings.data_dir / "finetune-buffer", parse_duration(window), reservoir
    )
    if events_file is not None:
        with open(events_file, "rb") as fh:
            added = buf.add(line.rstrip(b"\n") for line in fh if line.strip())
        console.print(f"buffered {added} events from {events_file}")
    reg = Registry(settings.registry_dir)
    opts = JobOptions(
        every_s=parse_duration(every),
        every_events=every_events,
        once=once,
        tolerance=tolerance,
        min_events=min_events,
        shadow_events=shadow,
        shadow_wait_s=parse_duration(shadow_wait),
        shadow_reports=shadow_workers,
    )
    train_opts = TrainOptions(
        split="time",
        encoder_mode=encoder_mode,
        encoder_steps=40,
        train=TrainConfig(epochs=epochs, patience=2),
    )

    def show(result: RoundResult) -> None:
        if as_json:
            print_json(result.model_dump(mode="json"))
            return
        console.print(f"round: {result.counts} epochs={result.epochs} {result.seconds:.1f} s")
        if result.candidate:
            rows = {
                "candidate": result.candidate,
                **({"current": result.current} if result.current else {}),
            }
            cols: tuple[str, ...] = ("hr@10", "ndcg@10", "auc_click", "auc_purchase")
            if "online_hit_rate" in result.candidate:
                cols += ("online_hit_rate",)
            console.print(
                metrics_table("held-out slice (online: shadow on live events)", rows, cols)
            )
        color = {"published": "green", "refused": "red"}.get(result.decision, "yellow")
        console.print(
            f"[{color}]{result.decision}[/{color}] {result.version or ''} "
            f"(parent {result.parent}): {result.reason}"
        )

    items = load_items(items_file) if items_file else None
    with TrainProgress(console) as progress:

        def train_round(
            items: list[CatalogItem], events: list[Any], round_id: str, make_current: bool
        ) -> RoundResult:
            return run_round(
                settings,
                reg,
                items,
                events,
                train_opts,
                tolerance,
                round_id,
                progress.hooks,
                make_current,
                corrupt_labels,
            )

        job = FineTuneJob(settings, reg, buf, train_round, opts, items, show)
        try:
            asyncio.run(job.run(consume=events_file is None))
        except KeyboardInterrupt:
            console.print("stopped")
        finally:
            buf.close()
