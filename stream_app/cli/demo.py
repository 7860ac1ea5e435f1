"""``streamrec demo``: broker + data + model + worker + live recommendations, one command."""

from __future__ import annotations

from pathlib import Path

import click

from stream_app.cli.common import broker_option, cli, console, settings_from


@cli.command()
@click.option(
    "--duration",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds of streaming (Ctrl-C stops earlier).",
)
@click.option("--rate", type=float, default=100.0, show_default=True, help="Events per second.")
@click.option(
    "--workdir",
    type=click.Path(path_type=Path),
    default=Path("var/demo"),
    show_default=True,
    help="Data, registry, worker state and logs of the demo.",
)
@click.option("--items", "items_file", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--events", "events_file", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--users", type=int, default=600, show_default=True, help="Synthetic users.")
@click.option("--epochs", type=int, default=4, show_default=True, help="If a model is trained.")
@click.option("--web-port", type=int, default=6066, show_default=True)
@broker_option
@click.pass_context
def demo(
    ctx: click.Context,
    duration: float,
    rate: float,
    workdir: Path,
    items_file: Path | None,
    events_file: Path | None,
    users: int,
    epochs: int,
    web_port: int,
    broker: str | None,
) -> None:
    """Start what is missing (Kafka, data, model, worker), stream events, show live recs."""
    from stream_app.demo import DemoOptions, run_demo

    settings = settings_from(ctx, registry_dir=workdir / "registry", **{"kafka.broker": broker})
    opts = DemoOptions(
        workdir=workdir,
        duration=duration,
        rate=rate,
        users=users,
        epochs=epochs,
        items_file=items_file,
        events_file=events_file,
        web_port=web_port,
    )
    try:
        run_demo(settings, opts, console)
    except Exception as exc:  # noqa: BLE001 - show the reason, not a traceback
        raise click.ClickException(str(exc)) from exc
