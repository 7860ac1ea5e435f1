"""CLI defects of issue 13 item 7: data on stdout, a warning naming unknown STREAMREC_*
variables, one line (no traceback, no unclosed client) when no broker answers, option values
checked before any side effect."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.settings import PREFIX

ROOT = Path(__file__).resolve().parents[2]
DEAD_BROKER = "localhost:1"


def _run(args: list[str], tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(PREFIX)}
    return subprocess.run(
        [sys.executable, "-m", "stream_app.cli", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp,
        check=False,
    )


def test_tables_are_data_on_stdout(tmp_path: Path):
    r = _run(["model", "list", "--registry", str(tmp_path / "reg")], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "version" in r.stdout and "status" in r.stdout


def test_unknown_setting_variables_are_named_in_a_warning(tmp_path: Path):
    r = _run(
        ["model", "list", "--registry", str(tmp_path)],
        tmp_path,
        STREAMREC_TOPICZ__EVENTS="x",
        STREAMREC_REGISTRY_DIRR="/elsewhere",
        STREAMREC_KAFKA__BROKER="h:2",
    )
    assert r.returncode == 0, r.stderr
    warning = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1
    assert "STREAMREC_REGISTRY_DIRR" in warning[0] and "STREAMREC_TOPICZ__EVENTS" in warning[0]
    assert "STREAMREC_KAFKA__BROKER" not in warning[0]


@pytest.mark.parametrize(
    "args",
    [
        ["consume", "--topic", "t", "--limit", "1"],
        ["produce", "lines.jsonl", "--topic", "t"],
        ["finetune", "--once"],
    ],
)
def test_no_broker_is_one_line_naming_the_setting(tmp_path: Path, args: list[str]):
    (tmp_path / "lines.jsonl").write_text('{"user_id": "u1"}\n')
    args = [*args, "--registry", str(tmp_path / "reg")] if args[0] == "finetune" else args
    r = _run(args, tmp_path, STREAMREC_KAFKA__BROKER=DEAD_BROKER)
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("Error: no Kafka broker answers at localhost:1")
    assert "STREAMREC_KAFKA__BROKER" in lines[0]
    assert "Traceback" not in r.stderr and "Unclosed" not in r.stderr
    if args[0] == "finetune":
        assert "--items" in lines[0]


def test_a_bad_option_value_is_refused_before_any_side_effect(tmp_path: Path):
    buffer = tmp_path / "D"
    r = _run(["finetune", "--every", "bogus", "--buffer-dir", str(buffer)], tmp_path)
    assert r.returncode != 0
    assert "--every" in r.stderr and "bogus" in r.stderr
    assert not buffer.exists()
