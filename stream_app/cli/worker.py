"""``streamrec worker``: run the streaming worker (a faust worker, started programmatically)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import click

from schemas.settings import Settings
from stream_app.cli.common import broker_option, cli, command_settings, console, registry_option
from stream_app.cli.options import setting

BROKER_TIMEOUT_S = 20.0


async def _prepare_kafka(settings: Settings) -> int:
    """Create missing topics; return the events topic's partition count."""
    from aiokafka import AIOKafkaProducer

    from stream_app.kafka.io import ensure_topics, start_client

    await ensure_topics(settings)
    producer = AIOKafkaProducer(**settings.kafka.client_kwargs())
    await start_client(producer, settings)
    try:
        return len(await producer.partitions_for(settings.topics.events))
    finally:
        await producer.stop()


def check_broker(settings: Settings) -> int:
    from stream_app.kafka.io import BrokerUnavailable

    try:
        return asyncio.run(asyncio.wait_for(_prepare_kafka(settings), BROKER_TIMEOUT_S))
    except click.ClickException:
        raise
    except BrokerUnavailable as exc:  # it says why (login, certificate, protocol, no answer)
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - any failure here means: no usable broker
        broker = settings.kafka.broker
        msg = (
            f"no Kafka broker answers at {broker} ({type(exc).__name__}: {exc}). Start one "
            "with `streamrec kafka start` or pass --broker HOST:PORT."
        )
        raise click.ClickException(msg) from None


def limit_blas_threads(threads: int) -> None:
    """Cap numpy's BLAS threads (``serving.blas_threads``) before numpy is imported. The
    worker's products are small and per batch: OpenBLAS's own thread pool (one thread per core
    by default) spent far more time synchronising than computing, e.g. a [5, 64] x [64, 10k]
    retrieval product took 8 ms with the default pool on a busy 2-core machine, 0.5 ms with
    one thread. An explicit OPENBLAS_NUM_THREADS in the environment wins."""
    if threads <= 0:
        return
    if "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            console.print("[yellow]numpy already imported: serving.blas_threads not applied")
            return
        threadpool_limits(threads, user_api="blas")
        return
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))


def check_registry(registry_dir: Path) -> str:
    from stream_app.registry import Registry

    reg = Registry(registry_dir)
    version = reg.current()
    if version is None:
        msg = (
            f"registry {registry_dir}: no CURRENT model version. Train one with "
            "`streamrec train --items ... --events ...` or pass --registry DIR."
        )
        raise click.ClickException(msg)
    problems = reg.verify(version)
    if problems:
        msg = f"registry {registry_dir}: CURRENT version {version} is not sound: " + "; ".join(
            problems
        )
        raise click.ClickException(msg)
    return version


@cli.command()
@registry_option
@setting("data_dir", "--data-dir")
@broker_option
@setting("serving.web_port", "--web-port")
@setting("serving.web_host", "--web-host")
@setting("serving.device", "--device")
@setting("log_level", "--loglevel")
@click.pass_context
def worker(ctx: click.Context, **_: Any) -> None:
    """Run the streaming worker: events -> interest state -> top-K recommendations."""
    settings = command_settings(ctx)
    version = check_registry(settings.registry_dir)
    partitions = check_broker(settings)
    console.print(
        f"worker {settings.app_id}: model {version}, broker {settings.kafka.broker}, "
        f"{partitions} event partitions, "
        f"web http://{settings.serving.web_host}:{settings.serving.web_port}/dashboard"
    )

    limit_blas_threads(settings.serving.blas_threads)
    from faust.worker import Worker

    from stream_app.worker.app import create_app

    app = create_app(settings, partitions)
    worker = Worker(app, loglevel=settings.log_level)
    # At warn/error, faust adds a terminal spinner handler and sets the root logger to DEBUG:
    # every library debug record is then built (measurable per event). No spinner, no DEBUG.
    worker.spinner = None
    worker.execute_from_commandline()
