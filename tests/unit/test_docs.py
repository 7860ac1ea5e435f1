"""Documentation that must stay true: the README's settings table is generated from the code."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_settings_table_matches_the_code():
    spec = importlib.util.spec_from_file_location("rs", ROOT / "scripts" / "readme_settings.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    text = (ROOT / "README.md").read_text()
    assert mod.render(text) == text, "run: .venv/bin/python scripts/readme_settings.py"


def test_readme_names_the_two_commands_and_every_cli_command():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    for cmd in (
        "kafka",
        "generate",
        "convert",
        "produce",
        "consume",
        "train",
        "model",
        "worker",
        "demo",
        "replay",
        "finetune",
    ):
        assert f"streamrec {cmd}" in text, cmd
