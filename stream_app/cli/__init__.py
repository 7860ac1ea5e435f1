"""``streamrec`` command line: a thin layer over the pipelines.

Each sub-command lives in its own module and is registered here explicitly. Every flag sets
a Settings field (``stream_app.cli.options``), so ``STREAMREC_*`` environment variables set
the same things; the README's settings table lists them.
"""

from __future__ import annotations

import importlib
import sys

import click

from stream_app.cli.common import cli
from stream_app.kafka.io import BrokerUnavailable

COMMANDS = ("kafka", "data", "train", "model", "worker", "replay", "finetune", "demo")


def cli_group() -> click.Group:
    """The root command with every sub-command registered (each module registers its own;
    torch-side work is imported inside the commands, never here)."""
    for name in COMMANDS:
        importlib.import_module(f"stream_app.cli.{name}")
    return cli


def main(argv: list[str] | None = None) -> int:
    group = cli_group()
    try:
        group.main(args=argv, prog_name="streamrec", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except BrokerUnavailable as exc:  # any command: one line, no traceback
        click.echo(f"Error: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
