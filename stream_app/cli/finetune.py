"""``streamrec finetune``: the incremental fine-tuning side job (a separate process).

The composition root of the job: the runtime side (``stream_app.finetune``: consumer, buffer,
scheduling, notices, shadow) gets the torch side's round trainer
(``model_export.finetune.rounds.run_round``) injected; torch loads only inside the command.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from schemas.items import CatalogueItem
from schemas.reports import RoundResult
from stream_app.cli.common import (
    broker_option,
    cli,
    command_settings,
    console,
    input_file,
    json_option,
    metrics_table,
    out,
    print_json,
    registry_option,
)
from stream_app.cli.options import setting
from stream_app.kafka.io import BrokerUnavailable


def show_round(result: RoundResult, as_json: bool) -> None:
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
        out.print(metrics_table("held-out slice (online: shadow on live events)", rows, cols))
    color = {"published": "green", "refused": "red"}.get(result.decision, "yellow")
    console.print(
        f"[{color}]{result.decision}[/{color}] {result.version or ''} "
        f"(parent {result.parent}): {result.reason}"
    )


@cli.command()
@registry_option
@setting("finetune.every", "--every")
@setting("finetune.every_events", "--every-events")
@setting("finetune.once", "--once", is_flag=True)
@setting("finetune.window", "--window")
@setting("finetune.reservoir", "--reservoir")
@setting("finetune.tolerance", "--tolerance")
@setting("finetune.min_events", "--min-events")
@input_file("--events", "events_path", "Offline: take events from a JSONL file instead of Kafka.")
@input_file("--items", "items_path", "Catalogue JSONL [default: read the items topic].")
@setting("finetune.encoder_mode", "--encoder-mode")
@setting("finetune.epochs", "--epochs")
@setting("finetune.buffer_dir", "--buffer-dir")
@setting("finetune.shadow", "--shadow", metavar="N")
@setting("finetune.shadow_wait", "--shadow-wait")
@setting("finetune.shadow_workers", "--shadow-workers")
@setting("finetune.corrupt_labels", "--corrupt-labels", is_flag=True, hidden=True)
@json_option
@broker_option
@click.pass_context
def finetune(
    ctx: click.Context,
    events_path: Path | None,
    items_path: Path | None,
    as_json: bool,
    **_: Any,
) -> None:
    """Fine-tune the served model on new events; publish only what passes the gate."""
    from model_export.finetune.rounds import run_round
    from stream_app.cli.progress import TrainProgress
    from stream_app.datagen.jsonl import load_items
    from stream_app.finetune.buffer import EventBuffer
    from stream_app.finetune.job import FineTuneJob
    from stream_app.registry import Registry

    settings = command_settings(ctx)
    job_opts = settings.finetune
    round_settings = settings.model_copy(
        update={"training": job_opts.round_training(settings.training)}
    )
    buf = EventBuffer(
        job_opts.buffer_dir or settings.data_dir / "finetune-buffer",
        job_opts.window,
        job_opts.reservoir,
    )
    if events_path is not None:
        with open(events_path, "rb") as fh:
            added = buf.add(line.rstrip(b"\n") for line in fh if line.strip())
        console.print(f"buffered {added} events from {events_path}")
    reg = Registry(settings.registry_dir)
    items = load_items(items_path) if items_path else None
    with TrainProgress(console) as progress:

        def train_round(
            items: list[CatalogueItem], events: list[Any], round_id: str, make_current: bool
        ) -> RoundResult:
            return run_round(
                round_settings,
                reg,
                items,
                events,
                job_opts.tolerance,
                round_id,
                progress.hooks,
                make_current,
                job_opts.corrupt_labels,
            )

        job = FineTuneJob(settings, reg, buf, train_round, items, lambda r: show_round(r, as_json))
        try:
            asyncio.run(job.run(consume=events_path is None))
        except KeyboardInterrupt:
            console.print("stopped")
        except BrokerUnavailable as exc:
            hint = "" if items_path else "; or pass --items FILE (the catalogue) and --events FILE"
            msg = f"{exc}{hint}"
            raise click.ClickException(msg) from None
        finally:
            buf.close()
