"""``streamrec kafka start|stop|status``, ``streamrec produce`` and ``streamrec consume``."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from schemas.settings import Settings
from stream_app.cli.common import (
    broker_option,
    cli,
    command_settings,
    console,
    json_option,
    print_json,
)
from stream_app.cli.options import setting
from stream_app.kafka import local as kafka_local


@cli.group()
def kafka() -> None:
    """Run a local single-node Apache Kafka (KRaft) from Maven Central jars, no Docker."""


def _broker_opts(f: Any) -> Any:
    f = setting("local_kafka.port", "--port")(f)
    return setting("local_kafka.data_dir", "--data-dir")(f)


def _data_dir(settings: Settings) -> Path:
    local = settings.local_kafka
    return local.data_dir if local.data_dir is not None else Path("var") / f"kafka-{local.port}"


@kafka.command("start")
@_broker_opts
@setting("topics.partitions", "--partitions")
@setting("local_kafka.secure", "--secure", is_flag=True)
@click.pass_context
def kafka_start(ctx: click.Context, **_: Any) -> None:
    """Fetch jars (first time), format storage, start the broker, wait until it answers."""
    settings = command_settings(ctx)
    port, ddir = settings.local_kafka.port, _data_dir(settings)
    k, secure = settings.kafka, settings.local_kafka.secure
    with console.status(f"starting kafka {settings.kafka_version} on localhost:{port} ..."):
        try:
            st = kafka_local.start(
                port,
                ddir,
                settings.kafka_version,
                settings.cache_dir,
                settings.topics.partitions,
                secure_listener=secure,
                username=k.sasl_username if secure else None,
                password=k.sasl_password.get_secret_value() if secure and k.sasl_password else None,
            )
        except kafka_local.KafkaSetupError as exc:
            raise click.ClickException(str(exc)) from None
    console.print(st.describe())


@kafka.command("install")
@click.pass_context
def kafka_install(ctx: click.Context) -> None:
    """Fetch the Kafka jars from Maven Central into the cache (no broker started)."""
    settings = command_settings(ctx)
    with console.status(f"fetching org.apache.kafka:kafka_2.13:{settings.kafka_version} ..."):
        try:
            libs = kafka_local.ensure_jars(settings.kafka_version, settings.cache_dir)
        except kafka_local.KafkaSetupError as exc:
            raise click.ClickException(str(exc)) from None
    console.print(f"kafka {settings.kafka_version} jars in {libs}")


@kafka.command("stop")
@_broker_opts
@click.pass_context
def kafka_stop(ctx: click.Context, **_: Any) -> None:
    """Stop the broker started with the same --data-dir (only that process)."""
    ddir = _data_dir(command_settings(ctx))
    stopped = kafka_local.stop(ddir)
    console.print("kafka stopped" if stopped else f"no broker of ours running for {ddir}")


@kafka.command("status")
@_broker_opts
@click.pass_context
def kafka_status(ctx: click.Context, **_: Any) -> None:
    """Exit 0 when our broker runs and accepts connections, 1 otherwise."""
    settings = command_settings(ctx)
    st = kafka_local.status(settings.local_kafka.port, _data_dir(settings))
    console.print(st.describe())
    if not (st.running and st.reachable):
        sys.exit(1)


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--topic", required=True, help="Destination topic.")
@setting("produce.rate", "--rate")
@setting("produce.key_field", "--key-field")
@broker_option
@setting("produce.create_topics", "--create-topics/--no-create-topics")
@click.pass_context
def produce(ctx: click.Context, file: Path, topic: str, **_: Any) -> None:
    """Send each line of a JSONL FILE to a topic (key = user_id / item_id)."""
    from stream_app.kafka import io as kafka_io

    settings = command_settings(ctx)
    opts = settings.produce
    lines = kafka_io.read_lines(file)

    async def run() -> kafka_io.ProduceResult:
        if opts.create_topics:
            await kafka_io.ensure_topics(settings)
        with Progress(
            TextColumn("produce"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("produce", total=len(lines))
            return await kafka_io.produce_lines(
                settings,
                lines,
                topic,
                opts.rate,
                opts.key_field,
                lambda n: bar.update(task, completed=n),
            )

    res = _run(run(), settings.kafka.broker)
    console.print(
        f"sent {res.sent} messages to {topic} in {res.seconds:.2f} s "
        f"({res.sent / max(res.seconds, 1e-9):,.0f}/s); {res.unparsable} not JSON (sent keyless)"
    )


@cli.command()
@click.option("--topic", required=True)
@click.option("--limit", type=int, default=None, help="Stop after N messages.")
@json_option
@click.option("--from-beginning", is_flag=True, help="Start at the earliest offset.")
@setting("consume.timeout", "--timeout")
@broker_option
@click.pass_context
def consume(
    ctx: click.Context,
    topic: str,
    limit: int | None,
    as_json: bool,
    from_beginning: bool,
    **_: Any,
) -> None:
    """Print messages of a topic (values, plus DLQ headers when present)."""
    from stream_app.kafka import io as kafka_io

    settings = command_settings(ctx)
    timeout = settings.consume.timeout

    async def run() -> int:
        n = 0
        async for rec in kafka_io.consume_records(settings, topic, limit, from_beginning, timeout):
            n += 1
            if as_json:
                print_json(rec.as_dict())
            else:
                d = rec.as_dict()
                sys.stdout.write(
                    f"{rec.topic}[{rec.partition}]@{rec.offset} key={d['key']} "
                    f"{json.dumps(d['value'], default=str)}"
                )
                if rec.headers:
                    sys.stdout.write(f" headers={json.dumps(d['headers'])}")
                sys.stdout.write("\n")
        return n

    n = _run(run(), settings.kafka.broker)
    console.print(f"{n} messages from {topic}")


def _run(coro, broker: str):  # type: ignore[no-untyped-def]
    from aiokafka.errors import KafkaConnectionError

    try:
        return asyncio.run(coro)
    except KafkaConnectionError as exc:
        msg = f"cannot reach Kafka at {broker}: {exc} (start one with `streamrec kafka start`)"
        raise click.ClickException(msg) from None
