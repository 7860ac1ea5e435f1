"""Regenerate (default) or check (--check) the settings table in README.md: every setting's
environment variable, default, the CLI flags that set it and what it means."""

import sys
from pathlib import Path

from schemas.settings import env_name, is_secret, setting_field, setting_paths
from stream_app.cli import cli_group
from stream_app.cli.options import setting_flags

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def _default(path: str) -> str:
    if path == "cache_dir":
        return "'~/.cache/streamrec'"
    if is_secret(path):
        return "(secret)"
    return repr(setting_field(path).get_default(call_default_factory=True))


def table() -> str:
    flags = setting_flags(cli_group())
    rows = ["| variable | default | flags | meaning |", "|---|---|---|---|"]
    for path in setting_paths():
        shown = "<br>".join(f"`{f}`" for f in flags.get(path, [])) or "-"
        desc = (setting_field(path).description or "").replace("|", "\\|")
        rows.append(f"| `{env_name(path)}` | `{_default(path)}` | {shown} | {desc} |")
    return "\n".join(rows)


def render(text: str) -> str:
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    current = README.read_text()
    fresh = render(current)
    if "--check" in sys.argv:
        sys.exit(
            0
            if fresh == current
            else "README settings table is stale: run scripts/readme_settings.py"
        )
    README.write_text(fresh)
