"""Compare-and-swap on the registry's CURRENT: workers that each detect the same bad version
roll it back once, not once each; promote can be made conditional the same way; a manifest's
status can be rewritten without touching the version's files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from schemas.manifest import ShadowRecord
from stream_app.registry import CurrentChanged, Registry
from tests.manifests import draft


def publish(reg: Registry, payload: str, **kw) -> str:
    version, staging = reg.staging()
    (staging / "ranker.onnx").write_text(payload)
    return reg.publish(staging, draft(), **kw)


def three(tmp_path: Path) -> tuple[Registry, str, str, str]:
    reg = Registry(tmp_path)
    return reg, publish(reg, "a"), publish(reg, "b"), publish(reg, "c")


def test_rollback_with_expected_current_moves_once(tmp_path: Path):
    reg, v1, v2, v3 = three(tmp_path)
    assert reg.rollback(expected_current=v3) == (v3, v2)
    with pytest.raises(CurrentChanged, match=f"expected CURRENT={v3}, found {v2}"):
        reg.rollback(expected_current=v3)  # a second worker that saw the same bad version
    assert reg.current() == v2 and reg.history() == [v1, v2]
    assert reg.rollback() == (v2, v1)  # without the guard: unconditional, as before


ROLLER = """
import sys
from pathlib import Path
from stream_app.registry import CurrentChanged, Registry
try:
    print(Registry(Path(sys.argv[1])).rollback(expected_current=sys.argv[2]))
except CurrentChanged:
    print("changed")
"""


def test_concurrent_workers_roll_the_same_bad_version_back_exactly_once(tmp_path: Path):
    reg, v1, v2, v3 = three(tmp_path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", ROLLER, str(tmp_path), v3], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(outs) == sorted([str((v3, v2))] + ["changed"] * 3)
    assert reg.current() == v2 and reg.history() == [v1, v2]


def test_promote_with_expected_current(tmp_path: Path):
    reg, v1, v2, v3 = three(tmp_path)
    reg.rollback()
    with pytest.raises(CurrentChanged):
        reg.promote(v3, expected_current=v1)
    assert reg.current() == v2
    reg.promote(v3, expected_current=v2)
    assert reg.current() == v3


def test_set_status_rewrites_the_manifest_only(tmp_path: Path):
    reg, _, _, _ = three(tmp_path)
    shadow = publish(reg, "d", make_current=False, status="shadow")
    files = reg.manifest(shadow).files
    record = ShadowRecord(
        reason="promote", current_hit_rate=0.1, shadow_hit_rate=0.2, evaluated=5, events=9
    )
    reg.set_status(shadow, "published", shadow=record)
    m = reg.manifest(shadow)
    assert m.status == "published" and m.shadow == record
    assert m.files == files and reg.verify(shadow) == []
    reg.promote(shadow)
    assert reg.current() == shadow
