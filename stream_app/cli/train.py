"""``streamrec train``: train the ranker, test it beside the baselines, export, publish.

Imports torch only inside the command (the [train] extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from stream_app.cli.common import (
    cli,
    command_settings,
    console,
    json_option,
    log_options,
    metrics_table,
    out,
    print_json,
)
from stream_app.cli.options import setting


@cli.command()
@log_options
@setting("training.engine", "--engine")
@setting("training.split", "--split")
@setting("training.epochs", "--epochs")
@setting("training.patience", "--patience")
@setting("training.encoder_mode", "--encoder-mode")
@setting("training.encoder_steps", "--encoder-steps")
@setting("interests.k", "--k")
@setting("training.lr", "--lr")
@setting("training.weight_decay", "--weight-decay")
@setting("training.dropout", "--dropout")
@setting("training.batch_size", "--batch-size")
@setting("training.negatives", "--negatives")
@setting("training.d", "--dim")
@setting("training.hidden", "--hidden")
@setting(
    "training.use_text",
    "--no-text",
    invert=True,
    is_flag=True,
    help="Ablation: item ids only, no text encoder.",
)
@setting(
    "training.use_ids", "--no-ids", invert=True, is_flag=True, help="Ablation: text only, no ids."
)
@setting("training.seed", "--seed")
@setting("model_path", "--model-path")
@setting("training.publish", "--no-publish", invert=True, is_flag=True, help="Train and test only.")
@json_option
@click.pass_context
def train(ctx: click.Context, items_path: Path, events_path: Path, as_json: bool, **_: Any) -> None:
    """Train a model (engine tower-v2 by default, or ranker-v1), test it against baselines,
    export to ONNX, publish."""
    from model_export.pipeline import run_training
    from stream_app.cli.progress import TrainProgress

    settings = command_settings(ctx)
    with TrainProgress(console) as hooks:
        try:
            report = run_training(
                settings,
                items_path,
                events_path,
                hooks.hooks,
                settings.registry_dir,
                publish=settings.training.publish,
            )
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    if as_json:
        print_json({"protocol": report.split, **report.model_dump(mode="json")})
        return
    out.print(metrics_table(f"test ({report.split} split)", report.systems))
    tr = report.train
    console.print(
        f"epochs run {tr.epochs_run} (best {tr.best_epoch}, early stop "
        f"{tr.stopped_early}), total {report.seconds} s"
    )
    if report.version is not None:
        console.print(f"published {report.version} to {settings.registry_dir} (CURRENT)")
