"""Regenerate (default) or check (--check) the settings table in README.md from Settings."""

import sys
from pathlib import Path

from schemas.settings import setting_env_names

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- settings:start -->", "<!-- settings:end -->"


def table() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, default, desc in setting_env_names():
        if "cache" in name.lower():
            default = "'~/.cache/streamrec'"
        rows.append(f"| `{name}` | `{default}` | {desc} |")
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
