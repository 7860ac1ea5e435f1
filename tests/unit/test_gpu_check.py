"""``bench/gpu_check.sh``: on a machine without a GPU, --quick prints the CPU rows with
"no CUDA device: CPU rows only" and exits 0; the agreement check it gates on catches a
changed top-K and tolerates a near-tie at the K-th score."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bench.gpu_check import NO_CUDA, compare
from stream_app.core.engine import Scored
from stream_app.core.scorer import RankerOut
from stream_app.serving.sessions import _gpu_present

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(_gpu_present(), reason="a GPU is present: the check runs CUDA rows")
def test_quick_check_without_a_gpu_prints_the_cpu_rows_and_exits_0():
    pytest.importorskip("torch")  # the random-init model is exported on the fly
    proc = subprocess.run(
        ["bash", "bench/gpu_check.sh", "--quick", "--device-on-cpu", "--batches", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert NO_CUDA in proc.stdout
    assert re.search(r"│\s*10,000\s*│\s*exact\s*│\s*\d+\.\d+\s*│\s*-\s*│", proc.stdout), proc.stdout
    assert re.search(
        r"device path on the CPU provider [\d.]+ ms per batch, top-K agree yes", proc.stdout
    )


def scored(rows: np.ndarray, score: np.ndarray) -> Scored:
    b, w = rows.shape
    z = np.zeros((b, w), np.float32)
    return Scored(
        [None] * b,  # type: ignore[list-item]
        rows,
        score,
        np.zeros((b, w), np.int64),
        np.ones((b, 2), np.float32),
        np.zeros((b, 1), np.int64),
        RankerOut(z, z, np.zeros((b, w, 3), np.float32)),
    )


def test_agreement_catches_a_changed_top_k_and_allows_near_ties():
    rows = np.array([[5, 6, 7, 8]])
    base = scored(rows, np.array([[0.9, 0.8, 0.7, -np.inf]]))
    assert compare(base, base, k=3) == (True, 0.0)
    close = scored(rows, np.array([[0.9004, 0.8, 0.7, -np.inf]]))
    assert compare(base, close, k=3)[0]
    off = scored(rows, np.array([[0.95, 0.8, 0.7, -np.inf]]))
    assert not compare(base, off, k=3)[0]
    other = scored(np.array([[5, 6, 9, 8]]), np.array([[0.9, 0.8, 0.7, -np.inf]]))
    assert not compare(
        base, scored(np.array([[5, 6, 9, 8]]), np.array([[0.9, 0.8, 0.2, -1]])), k=3
    )[0]
    assert compare(base, other, k=3)[0]  # item 9 for item 7 at the same k-th score: a tie
    fewer = scored(rows, np.array([[0.9, 0.8, -np.inf, -np.inf]]))
    assert not compare(base, fewer, k=3)[0]
