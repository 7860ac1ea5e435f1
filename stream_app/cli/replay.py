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

from stream_app.cli.common import cli, console, log_options, print_json, settings_from

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


def _csv(value: str) -> tuple[str, ...]:
    if value.strip().lower() in ("", "none"):
        return ()
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _ks(value: str) -> tuple[int, ...]:
    try:
        ks = tuple(sorted({int(v) for v in _csv(value)}))
    except ValueError:
        msg = f"expected comma-separated integers, got {value!r}"
        raise click.BadParameter(msg) from None
    if not ks or ks[0] < 1:
        msg = f"expected positive cutoffs, got {value!r}"
        raise click.BadParameter(msg)
    return ks


def _pairs(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        name, sep, version = v.partition("=")
        if not sep or not name or not version:
            msg = f"expected NAME=VERSION, got {v!r}"
            raise click.BadParameter(msg)
        out[name.strip()] = version.strip()
    return out


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


def summary_tables(result: dict[str, Any]) -> list[Table]:
    """Accuracy (every cutoff) and beyond-accuracy (first cutoff) tables."""
    k = result["ks"][0]
    accuracy = [c.format(k=kk) for kk in result["ks"] for c in ACCURACY[:2]] + list(ACCURACY[2:])
    present = {c for row in result["systems"].values() for c in row}
    beyond = [c.format(k=k) for c in BEYOND if c.format(k=k) in present]
    tables = []
    for title, cols in (
        (f"replay ({result['protocol']} protocol): accuracy", accuracy),
        (f"diversity and coverage of the top {k}", beyond),
    ):
        table = Table(title=title)
        table.add_column("system")
        for c in cols:
            table.add_column(_short(c), justify="right")
        for name, row in result["systems"].items():
            table.add_row(
                name,
                *(
                    f"{row[c]:.4f}" if isinstance(row.get(c), float) and row[c] == row[c] else "-"
                    for c in cols
                ),
            )
        tables.append(table)
    return tables


def type_table(result: dict[str, Any]) -> Table:
    k = result["ks"][0]
    table = Table(title="by event type")
    table.add_column("system")
    for kind in ("click", "purchase"):
        for c in (f"hr@{k}", f"ndcg@{k}", "n"):
            table.add_column(f"{kind} {c}", justify="right")
    for name, row in result["systems"].items():
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


def _ablation_trainer() -> Any:
    """The torch side's ablation training (imported only when asked for)."""
    from model_export.ablations import train

    return train


@cli.command()
@log_options
@click.option("--model", "version", default=None, help="Version to evaluate [default: CURRENT].")
@click.option(
    "--protocol", type=click.Choice(["stream", "loo"]), default="stream", show_default=True
)
@click.option("--k", "ks", default="10,20", show_default=True, help="Cutoffs, e.g. 10,20.")
@click.option("--baselines", default="pop,cooc", show_default=True, help="pop,cooc or none.")
@click.option(
    "--ablations",
    default="single-interest,no-diversity,no-text",
    show_default=True,
    help="Any of single-interest,no-diversity,no-text, or none.",
)
@click.option(
    "--ablation-version",
    "ablation_version",
    multiple=True,
    metavar="NAME=VERSION",
    help="Use this registry version for an ablation (repeatable).",
)
@click.option(
    "--train-ablations",
    is_flag=True,
    help="Train missing ablation versions now (not served; status 'ablation').",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Write report.md, metrics.json and PNG plots here.",
)
@click.option(
    "--lambdas",
    default="0,0.2,0.4,0.6,0.8,0.9,1",
    show_default=True,
    help="MMR lambdas for the trade-off plot (with --report).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--via-kafka", is_flag=True, help="Replay through the real topics and worker.")
@click.option("--rate", type=float, default=None, help="--via-kafka: events/s (default max).")
@click.option("--start-worker", is_flag=True, help="--via-kafka: start a worker for the run.")
@click.option(
    "--broker",
    default=None,
    metavar="HOST:PORT",
    help="Kafka bootstrap servers [STREAMREC_KAFKA__BROKER].",
)
@click.option(
    "--warmup-frac",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.8,
    show_default=True,
    help="stream: share of the log (by time) only warmed on.",
)
@click.option(
    "--max-users",
    type=click.IntRange(1),
    default=None,
    help="Score only the first N users (all events still feed the systems).",
)
@click.option(
    "--batch",
    type=click.IntRange(1),
    default=256,
    show_default=True,
    help="Events (stream) scored per batch.",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default=None,
    help="ONNX Runtime device [STREAMREC_SERVING__DEVICE].",
)
@click.pass_context
def replay(
    ctx: click.Context,
    items_path: Path,
    events_path: Path,
    registry: Path | None,
    version: str | None,
    protocol: str,
    ks: str,
    baselines: str,
    ablations: str,
    ablation_version: tuple[str, ...],
    train_ablations: bool,
    report_dir: Path | None,
    lambdas: str,
    as_json: bool,
    via_kafka: bool,
    rate: float | None,
    start_worker: bool,
    broker: str | None,
    warmup_frac: float,
    max_users: int | None,
    batch: int,
    device: str | None,
) -> None:
    """Replay an event log through the model and baselines; print accuracy and diversity."""
    from stream_app.replay.leakage import LeakageError
    from stream_app.replay.runner import ReplayError, ReplayOptions, run_replay

    settings = settings_from(
        ctx, registry_dir=registry, **{"kafka.broker": broker, "serving.device": device}
    )
    try:
        sweep = tuple(float(x) for x in _csv(lambdas)) if report_dir else ()
    except ValueError:
        msg = f"expected numbers, got {lambdas!r}"
        raise click.BadParameter(msg, param_hint="--lambdas") from None
    opts = ReplayOptions(
        protocol=protocol,
        ks=_ks(ks),
        baselines=_csv(baselines),
        ablations=_csv(ablations),
        ablation_versions=_pairs(ablation_version),
        train_ablation=_ablation_trainer() if train_ablations else None,
        warmup_frac=warmup_frac,
        max_users=max_users,
        chunk=batch,
        sweep_lambdas=sweep,
        device=settings.serving.device,
        threads=settings.serving.ort_threads,
    )
    with ReplayProgress() as bar:
        try:
            if via_kafka:
                from stream_app.replay.via_kafka import KafkaOptions, run_via_kafka

                result = run_via_kafka(
                    settings,
                    items_path,
                    events_path,
                    settings.registry_dir,
                    version,
                    opts,
                    KafkaOptions(rate=rate, start_worker=start_worker),
                    bar.hooks(),
                )
            else:
                result = run_replay(
                    settings,
                    items_path,
                    events_path,
                    settings.registry_dir,
                    version,
                    opts,
                    bar.hooks(),
                )
        except (LeakageError, ReplayError) as exc:
            raise click.ClickException(str(exc)) from None
    if report_dir is not None:
        from stream_app.replay import report

        files = report.write(result, report_dir)
        console.print(f"report: {files['report.md']} (+ {len(files) - 1} files)")
    if as_json:
        result.get("kafka", {}).pop("latency_samples", None)
        print_json(result)
        return
    for table in summary_tables(result):
        console.print(table)
    if result["protocol"] == "stream" and result["systems"]:
        console.print(type_table(result))
    for name, why in result.get("missing", {}).items():
        console.print(f"[yellow]missing ablation {name}: {why}[/yellow]")
    counts = ", ".join(f"{k} {v}" for k, v in result.get("counts", {}).items())
    timing = ", ".join(f"{k} {v}" for k, v in result.get("timing", {}).items())
    console.print(f"{counts}\n{timing}; total {result.get('seconds')} s")
    kafka = result.get("kafka")
    if kafka:
        console.print(
            f"through Kafka: {kafka['recommendations']}/{kafka['events_produced']} events got a "
            f"recommendation, {kafka['throughput_events_per_s']} ev/s; worker latency ms "
            f"{kafka['worker_latency_ms']}; end-to-end ms {kafka['end_to_end_ms']}"
        )
    if result.get("pop_equals_loo_popularity_eval") is not None:
        console.print(f"pop == loo_popularity_eval: {result['pop_equals_loo_popularity_eval']}")
