"""``serving.device=auto`` on a machine without a working CUDA: CPU, with a WARNING that says
why (no GPU device; or, when a device node exists, the CUDA provider library's own load error
or the session's refusal), once per reason; ``device=cuda`` refuses instead."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from schemas.onnx_spec import ITEM_TOWER
from stream_app.serving import sessions


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "_warned", set())


def test_no_gpu_device_is_a_warning_naming_it(monkeypatch, caplog):
    monkeypatch.setattr(sessions, "_gpu_present", lambda: False)
    with caplog.at_level(logging.WARNING, logger="streamrec.serving"):
        assert sessions.choose_providers("auto") == ["CPUExecutionProvider"]
        sessions.choose_providers("auto")
    assert caplog.text.count("no GPU device") == 1  # once per reason
    assert sessions.choose_providers("cpu") == ["CPUExecutionProvider"]


def test_a_device_node_without_a_working_cuda_falls_back_with_the_reason(
    monkeypatch, caplog, tiny_registry: Path
):
    monkeypatch.setattr(sessions, "_gpu_present", lambda: True)  # no real GPU here
    graph = next(tiny_registry.glob("v*/item_tower.onnx"))
    with caplog.at_level(logging.WARNING, logger="streamrec.serving"):
        sess = sessions.open_session(graph, ITEM_TOWER, "auto")
    assert sess.get_providers() == ["CPUExecutionProvider"]
    assert "running on CPU" in caplog.text
    assert "CUDA" in caplog.text and ("libcu" in caplog.text or "refused" in caplog.text or
                                      "no CUDAExecutionProvider" in caplog.text)  # fmt: skip
    with pytest.raises(sessions.ModelLoadError, match="CUDA"):
        sessions.open_session(graph, ITEM_TOWER, "cuda")
