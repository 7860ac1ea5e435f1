"""``streamrec replay --json --report DIR``: one JSON object on stdout; report.md,
metrics.json and PNG plots that are real images of non-trivial size."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from stream_app.cli import main
from stream_app.replay import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    raw = path.read_bytes()
    assert raw[:8] == PNG_MAGIC, path.name
    assert len(raw) > 15_000, f"{path.name}: only {len(raw)} bytes"
    img = image.imread(path)
    assert img.ndim == 3 and img.shape[0] >= 300 and img.shape[1] >= 500, img.shape
    assert float(img[..., :3].std()) > 0.05, f"{path.name} is nearly blank"


def test_cli_json_and_report(
    tiny_world: Path, tiny_registry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "report"
    code = main(
        [
            "replay",
            "--items",
            str(tiny_world / "items.jsonl"),
            "--events",
            str(tiny_world / "events.jsonl"),
            "--registry",
            str(tiny_registry),
            "--k",
            "5,10",
            "--max-users",
            "40",
            "--lambdas",
            "0,0.5,1",
            "--report",
            str(out_dir),
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["protocol"] == "stream"
    assert set(result["systems"]) == {"streamrec", "no-diversity", "pop", "cooc"}
    assert isinstance(result["systems"]["pop"]["hr@10"], float)
    assert result["counts"]["users_scored"] <= 40
    assert "single-interest" in result["missing"]
    for name in ("metric_vs_k.png", "tradeoff.png", "activity.png"):
        _assert_png(out_dir / name)
    text = (out_dir / "report.md").read_text()
    for needle in (
        "## Protocol",
        "## Results",
        "| streamrec |",
        "tradeoff.png",
        "## How to read the metrics",
        "single-interest",
    ):
        assert needle in text, needle
    saved = json.loads((out_dir / "metrics.json").read_text())
    assert saved["systems"]["streamrec"]["ndcg@10"] == result["systems"]["streamrec"]["ndcg@10"]
    assert [r["lambda"] for r in saved["sweep"]] == [0.0, 0.5, 1.0]


def test_cli_refusal_is_a_clear_error(
    tiny_world: Path, tiny_registry: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "replay",
            "--items",
            str(tiny_world / "items.jsonl"),
            "--events",
            str(tiny_world / "events.jsonl"),
            "--registry",
            str(tiny_registry),
            "--protocol",
            "loo",
        ]
    )
    assert code == 1
    assert "training.data.split='time', expected 'loo'" in capsys.readouterr().err


def test_latency_plot(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    samples = {
        "worker latency_ms": rng.gamma(2.0, 3.0, 500).tolist(),
        "end-to-end": rng.gamma(3.0, 6.0, 500).tolist(),
    }
    report.plot_latency(samples, tmp_path / "latency.png")
    _assert_png(tmp_path / "latency.png")
