"""``streamrec worker`` refuses to start with a clear message (no broker, no model, bad model),
and the metrics page parser used by tests and the demo."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_app.cli import main
from stream_app.registry import Registry
from stream_app.worker.metrics import Metrics, parse_counters
from tests.manifests import draft


def _registry(root: Path, tamper: bool = False) -> Path:
    reg = Registry(root)
    _, staging = reg.staging()
    (staging / "ranker.onnx").write_bytes(b"weights")
    version = reg.publish(staging, draft())
    if tamper:
        (reg.path(version) / "ranker.onnx").write_bytes(b"WEIGHTS")
    return root


def test_no_current_model_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    code = main(["worker", "--registry", str(tmp_path / "empty"), "--broker", "localhost:1"])
    assert code == 1
    assert "no CURRENT model version" in capsys.readouterr().err


def test_a_tampered_current_model_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    reg = _registry(tmp_path / "reg", tamper=True)
    assert main(["worker", "--registry", str(reg), "--broker", "localhost:1"]) == 1
    assert "sha256 mismatch" in capsys.readouterr().err


def test_no_broker_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    reg = _registry(tmp_path / "reg")
    assert main(["worker", "--registry", str(reg), "--broker", "localhost:1"]) == 1
    err = capsys.readouterr().err
    assert "no Kafka broker answers at localhost:1" in err and "--broker" in err


def test_metrics_page_parses_into_counters():
    m = Metrics()
    m.events_in.inc(3)
    m.dlq.labels("json").inc()
    m.model_loaded("v0001", None)
    m.model_loaded("v0002", "v0001")
    got = parse_counters(m.render().decode())
    assert got["streamrec_events_in_total"] == 3
    assert got['streamrec_dlq_total{reason="json"}'] == 1
    assert got['streamrec_model_info{version="v0002"}'] == 1
    assert 'streamrec_model_info{version="v0001"}' not in got
    assert got["streamrec_model_swaps_total"] == 1


BLAS_PROBE = """
import sys
from stream_app.cli.worker import limit_blas_threads
assert "numpy" not in sys.modules  # the worker command runs this before numpy is imported
limit_blas_threads(int(sys.argv[1]))
import numpy
from threadpoolctl import threadpool_info
print(max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"))
"""


@pytest.mark.parametrize(
    ("setting", "env", "expected"), [(1, None, "1"), (2, None, "2"), (1, "2", "2")]
)
def test_blas_threads_setting_caps_numpy_threads_unless_the_env_says_otherwise(
    setting: int, env: str | None, expected: str
):
    import os
    import subprocess
    import sys

    pytest.importorskip("threadpoolctl")
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    if env is not None:
        clean["OPENBLAS_NUM_THREADS"] = env
    out = subprocess.run(
        [sys.executable, "-c", BLAS_PROBE, str(setting)],
        env=clean,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == expected
