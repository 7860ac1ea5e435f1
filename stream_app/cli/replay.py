"""``streamrec replay``: evaluate a model version by replaying an event log through the same
core the worker runs (offline, or through Kafka with ``--via-kafka``), with baselines and
ablations side by side; ``--report DIR`` writes report.md, metrics.json and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from schemas.reports import RoundResult
from schemas.settings import Settings
from stream_app.cli.common import (
    broker_option,
    cli,
    command_settings,
    console,
    json_option,
    log_options,
    out,
    print_json,
)
from stream_app.cli.options import setting
from stream_app.core.hooks import Hooks
from stream_app.registry import Registry
from stream_app.replay.ablations import AblationTrainer
from stream_app.replay.refresh import RoundTrainer
from stream_app.replay.results import ReplayResult

ACCURACY = ("hr@{k}", "ndcg@{k}", "mrr", "auc_click", "auc_purchase")
BEYOND = (
    "coverage@{k}",
    "ild@{k}",
    "category_diversity@{k}",
    "interest_coverage@{k}",
    "true_interest_coverage@{k}",
    "novelty@{k}",
)
SHORT = {
    "auc_purchase": "auc_buy",
    "coverage": "cov",
    "category_diversity": "cat_div",
    "interest_coverage": "int_cov",
    "true_interest_coverage": "true_cov",
    "novelty": "novelty",
}


class ReplayProgress:
    """Rich progress bars per named task, stage lines as they start."""

    def __init__(self) -> None:
        self.bar = Progress(
            TextColumn("{task.description:>16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> ReplayProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(None, None, None)

    def stage(self, text: str) -> None:
        self.bar.console.print(f"[bold]·[/bold] {text}")

    def hooks(self) -> Any:
        from stream_app.core.hooks import Hooks

        return Hooks(stage=self.stage, progress=self.progress)

    def progress(self, name: str, done: int, total: int) -> None:
        name = name or "replay"
        if name not in self.tasks:
            self.tasks[name] = self.bar.add_task(name, total=total)
        self.bar.update(self.tasks[name], completed=done, total=total)


def _short(col: str) -> str:
    name, at, k = col.partition("@")
    return SHORT.get(name, name) + at + k


def summary_tables(result: ReplayResult) -> list[Table]:
    """Accuracy (every cutoff) and beyond-accuracy (first cutoff) tables."""
    k = result.ks[0]
    accuracy = [c.format(k=kk) for kk in result.ks for c in ACCURACY[:2]] + list(ACCURACY[2:])
    present = {c for row in result.systems.values() for c in row}
    beyond = [c.format(k=k) for c in BEYOND if c.format(k=k) in present]
    tables = []
    for title, cols in (
        (f"replay ({result.protocol} protocol): accuracy", accuracy),
        (f"diversity and coverage of the top {k}", beyond),
    ):
        table = Table(title=title)
        table.add_column("system")
        for c in cols:
            table.add_column(_short(c), justify="right")
        for name, row in result.systems.items():
            table.add_row(
                name,
                *(
                    f"{row[c]:.4f}" if isinstance(row.get(c), float) and row[c] == row[c] else "-"
                    for c in cols
                ),
            )
        tables.append(table)
    return tables


def targets_table(result: ReplayResult) -> Table | None:
    """The engine targets this run can decide (``stream_app.replay.targets``), met or not."""
    from stream_app.replay.targets import targets

    rows = targets(result.systems, result.ks[0])
    if not rows:
        return None
    table = Table(title="engine targets, this run")
    for col in ("target", "measured", "verdict"):
        table.add_column(col)
    for t in rows:
        table.add_row(t.name, t.measured, "[green]met[/green]" if t.met else "[red]not met[/red]")
    return table


def type_table(result: ReplayResult) -> Table:
    k = result.ks[0]
    table = Table(title="by event type")
    table.add_column("system")
    for kind in ("click", "purchase"):
        for c in (f"hr@{k}", f"ndcg@{k}", "n"):
            table.add_column(f"{kind} {c}", justify="right")
    for name, row in result.systems.items():
        cells = []
        for kind in ("click", "purchase"):
            r = row["by_event_type"][kind]
            cells += [
                f"{r[f'hr@{k}']:.4f}" if r["examples"] else "-",
                f"{r[f'ndcg@{k}']:.4f}" if r["examples"] else "-",
                str(r["examples"]),
            ]
        table.add_row(name, *cells)
    return table


def _ablation_trainer() -> AblationTrainer:
    """The torch side's ablation training (imported only when asked for)."""
    from model_export.ablations import train

    return train


def _round_trainer(settings: Settings) -> RoundTrainer:
    """The fine-tuning job's round (torch side, imported only when asked for)."""
    from model_export.finetune.rounds import run_round

    def train(
        opts: Settings, reg: Registry, items: list[Any], events: list[Any], rid: str, hooks: Hooks
    ) -> RoundResult:
        return run_round(opts, reg, items, events, settings.finetune.tolerance, rid, hooks)

    return train


@cli.command()
@log_options
@setting("replay.version", "--model")
@setting("replay.protocol", "--protocol")
@setting("replay.ks", "--k")
@setting("replay.baselines", "--baselines")
@setting("replay.ablations", "--ablations")
@setting("replay.ablation_versions", "--ablation-version", multiple=True, metavar="NAME=VERSION")
@setting("replay.compare", "--compare", multiple=True, metavar="NAME=VERSION")
@setting("replay.train_ablations", "--train-ablations", is_flag=True)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Write report.md, metrics.json and PNG plots here.",
)
@setting("replay.lambdas", "--lambdas")
@json_option
@setting("replay.via_kafka", "--via-kafka", is_flag=True)
@setting("replay.rate", "--rate")
@setting("replay.start_worker", "--start-worker", is_flag=True)
@broker_option
@setting("replay.warmup_frac", "--warmup-frac")
@setting("replay.max_users", "--max-users")
@setting("replay.batch", "--batch")
@setting("replay.finetune_every", "--finetune-every")
@setting("serving.device", "--device")
@click.pass_context
def replay(
    ctx: click.Context,
    items_path: Path,
    events_path: Path,
    report_dir: Path | None,
    as_json: bool,
    **_: Any,
) -> None:
    """Replay an event log through the model and baselines; print accuracy, diversity and
    the engine targets the run can decide (met or not)."""
    from stream_app.replay.leakage import LeakageError
    from stream_app.replay.runner import ReplayError, run_replay

    settings = command_settings(ctx)
    opts = settings.replay
    with ReplayProgress() as bar:
        try:
            if opts.via_kafka:
                from stream_app.replay.via_kafka import run_via_kafka

                result = run_via_kafka(settings, items_path, events_path, bar.hooks())
            else:
                result = run_replay(
                    settings,
                    items_path,
                    events_path,
                    bar.hooks(),
                    train_ablation=_ablation_trainer() if opts.train_ablations else None,
                    sweep_lambdas=opts.lambdas if report_dir is not None else (),
                    train_round=_round_trainer(settings) if opts.finetune_every else None,
                )
        except (LeakageError, ReplayError) as exc:
            raise click.ClickException(str(exc)) from None
    if report_dir is not None:
        from stream_app.replay import report

        files = report.write(result, report_dir)
        console.print(f"report: {files['report.md']} (+ {len(files) - 1} files)")
    if as_json:
        print_json(result.to_json())
        return
    for table in summary_tables(result):
        out.print(table)
    if result.protocol == "stream" and result.systems:
        out.print(type_table(result))
    goals = targets_table(result)
    if goals is not None:
        out.print(goals)
    for name, why in result.missing.items():
        console.print(f"[yellow]missing ablation {name}: {why}[/yellow]")
    counts = ", ".join(f"{k} {v}" for k, v in result.counts.items())
    timing = ", ".join(f"{k} {v}" for k, v in result.timing.items())
    console.print(f"{counts}\n{timing}; total {result.seconds} s")
    kafka = result.kafka
    if kafka is not None:
        console.print(
            f"through Kafka: {kafka.recommendations}/{kafka.events_produced} events got a "
            f"recommendation, {kafka.throughput_events_per_s} ev/s; worker latency ms "
            f"{kafka.worker_latency_ms}; end-to-end ms {kafka.end_to_end_ms}"
        )
    if result.pop_equals_loo_popularity_eval is not None:
        console.print(f"pop == loo_popularity_eval: {result.pop_equals_loo_popularity_eval}")
