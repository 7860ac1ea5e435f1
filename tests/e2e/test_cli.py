"""The CLI as a subprocess: generate -> train -> model list/show/rollback, help texts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "stream_app.cli"]


def run(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_help_lists_commands_and_never_shows_secrets():
    env = {"STREAMREC_KAFKA__SASL_PASSWORD": "hunter2-secret"}
    top = run("--help", env=env)
    assert top.returncode == 0
    for cmd in ("kafka", "generate", "convert", "produce", "consume", "train", "model"):
        assert cmd in top.stdout
    for cmd in (["train"], ["produce"], ["consume"], ["model", "rollback"], ["kafka", "start"]):
        out = run(*cmd, "--help", env=env)
        assert out.returncode == 0 and "hunter2" not in out.stdout + out.stderr


def test_bad_settings_are_reported_clearly():
    p = run("model", "list", env={"STREAMREC_SERVING__DEVICE": "tpu"})
    assert p.returncode != 0 and "serving.device" in p.stderr


@pytest.mark.slow
def test_generate_train_list_show_rollback(tmp_path: Path):
    world = tmp_path / "w"
    g = run(
        "generate",
        "--out",
        str(world),
        "--users",
        "120",
        "--items",
        "150",
        "--events",
        "3000",
        "--seed",
        "3",
        "--json",
    )
    assert g.returncode == 0, g.stderr
    assert json.loads(g.stdout)["events"] == 3000
    reg = tmp_path / "reg"
    args = [
        "train",
        "--items",
        str(world / "items.jsonl"),
        "--events",
        str(world / "events.jsonl"),
        "--registry",
        str(reg),
        "--epochs",
        "1",
        "--dim",
        "16",
        "--negatives",
        "16",
    ]
    t = run(*args, "--json")
    assert t.returncode == 0, t.stderr[-2000:]
    report = json.loads(t.stdout)
    assert report["version"] == "v0001" and report["protocol"] == "time"
    assert set(report["systems"]) == {"streamrec", "pop", "cooc", "zero-shot-lm"}
    assert 0.0 <= report["systems"]["streamrec"]["ndcg@10"] <= 1.0
    assert "epoch" in run(*args).stderr  # the human form prints the per-epoch table
    listing = json.loads(run("model", "list", "--registry", str(reg), "--json").stdout)
    assert listing["current"] == "v0002" and [v["version"] for v in listing["versions"]] == [
        "v0001",
        "v0002",
    ]
    show = json.loads(run("model", "show", "--registry", str(reg)).stdout)
    assert show["verified"] and show["version"] == "v0002" and show["parent"] is None
    rb = run("model", "rollback", "--registry", str(reg), "--broker", "localhost:1")
    assert rb.returncode == 0 and "v0002 -> v0001" in rb.stderr
    assert (
        json.loads(run("model", "list", "--registry", str(reg), "--json").stdout)["current"]
        == "v0001"
    )
    (reg / "v0002" / "item_tower.onnx").write_bytes(b"tampered")
    show = json.loads(run("model", "show", "v0002", "--registry", str(reg)).stdout)
    assert not show["verified"] and "item_tower.onnx" in show["problems"][0]
    bad = run("model", "promote", "v0002", "--registry", str(reg))
    assert bad.returncode != 0 and "cannot promote v0002" in bad.stderr
