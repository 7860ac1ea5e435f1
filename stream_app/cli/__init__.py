"""``streamrec`` command line: a thin layer over the pipelines.

Each sub-command lives in its own module and is registered here explicitly. Every flag maps
to a Settings field, so ``STREAMREC_*`` environment variables set the same things.
"""

from __future__ import annotations

import sys

import click

from stream_app.cli import kafka  # noqa: F401  (registers sub-commands)
from stream_app.cli.common import cli

_OPTIONAL = ("data", "model", "worker", "replay", "finetune", "demo")


def _register_optional() -> None:
    import importlib

    for name in _OPTIONAL:
        try:
            importlib.import_module(f"stream_app.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"stream_app.cli.{name}":
                raise


def main(argv: list[str] | None = None) -> int:
    _register_optional()
    try:
        cli.main(args=argv, prog_name="streamrec", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
