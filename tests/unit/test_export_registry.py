"""ONNX export parity gate and the registry's publish / rollback / crash safety."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stream_app.registry import Registry, RegistryError
from tests.manifests import draft

torch = pytest.importorskip("torch")


def perturb_onnx(path: Path, scale: float = 1.5) -> None:
    """Multiply the largest float initializer by ``scale`` (a 'deliberately perturbed' file)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT]
    big = max(inits, key=lambda i: np.prod(i.dims))
    arr = numpy_helper.to_array(big) * scale + 0.1
    big.CopyFrom(numpy_helper.from_array(arr.astype(np.float32), big.name))
    onnx.save(model, str(path))


def test_ranker_and_item_tower_parity_and_perturbed_files_fail(tmp_path: Path):
    from model_export.export import ParityError, check_parity, export_item_tower, export_ranker
    from model_export.modeling import ItemTowerExport, MultiTaskRanker, RankerConfig, RankerExport
    from schemas.onnx_spec import ITEM_TOWER, RANKER

    cfg = RankerConfig(text_dim=16, d=8, hidden=8, k=3, recent_len=4, n_items=10)
    model = MultiTaskRanker(cfg).eval()
    rng = np.random.default_rng(0)
    text = rng.normal(size=(11, 16)).astype(np.float32)
    num = rng.normal(size=(11, 2)).astype(np.float32)
    err = export_item_tower(model, text, np.arange(11), num, tmp_path, "v0042")
    assert err < 1e-4
    sample = {
        "slots": rng.normal(size=(3, 3, 16)).astype(np.float32),
        "strengths": np.array([[1, 0.5, 0]] * 3, np.float32),
        "recent": rng.normal(size=(3, 4, cfg.feat_dim)).astype(np.float32),
        "recent_mask": np.array([[1, 1, 1, 0]] * 3, np.float32),
        "cand": rng.normal(size=(3, 9, cfg.feat_dim)).astype(np.float32),
        "cooc": rng.random((3, 9)).astype(np.float32),
    }
    assert export_ranker(model, sample, tmp_path, "v0042") < 1e-4
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "ranker.onnx")).metadata_props}
    assert meta["model_version"] == "v0042"
    args = tuple(torch.from_numpy(sample[n]) for n in RANKER.input_names)
    perturb_onnx(tmp_path / "ranker.onnx")
    with pytest.raises(ParityError, match="ranker.onnx: parity check failed"):
        check_parity(tmp_path / "ranker.onnx", RankerExport(model), args, RANKER)
    perturb_onnx(tmp_path / "item_tower.onnx")
    tower_args = (torch.from_numpy(text), torch.arange(11), torch.from_numpy(num))
    with pytest.raises(ParityError):
        check_parity(
            tmp_path / "item_tower.onnx", ItemTowerExport(model.items), tower_args, ITEM_TOWER
        )


@pytest.mark.model
def test_real_encoder_export_parity_and_perturbation(tmp_path: Path):
    from model_export.encoder import load_encoder, tokenize
    from model_export.export import ParityError, check_parity, export_encoder
    from schemas.onnx_spec import ENCODER

    enc, tok = load_encoder(None)
    texts = ["Trail backpack 40L", "Cast iron skillet", "Jazz vinyl", "Tent for two people"] * 3
    assert export_encoder(enc, tok, texts, tmp_path, "v1") < 1e-4
    perturb_onnx(tmp_path / "encoder.onnx", scale=1.01)
    batch = tokenize(tok, texts[:4])
    with pytest.raises(ParityError):
        check_parity(
            tmp_path / "encoder.onnx", enc, (batch["input_ids"], batch["attention_mask"]), ENCODER
        )


def publish_dummy(reg: Registry, payload: str = "x", **kw) -> str:
    version, staging = reg.staging()
    (staging / "ranker.onnx").write_text(payload)
    (staging / "sub").mkdir()
    (staging / "sub" / "tok.json").write_text("{}")
    return reg.publish(staging, draft(metrics={"streamrec.ndcg@10": 0.1}), **kw)


def test_publish_twice_rollback_and_promote(tmp_path: Path):
    reg = Registry(tmp_path)
    v1 = publish_dummy(reg, "a")
    v2 = publish_dummy(reg, "b")
    assert (v1, v2) == ("v0001", "v0002") and reg.current() == v2
    assert reg.versions() == [v1, v2] and reg.verify(v2) == []
    m = reg.manifest(v2)
    assert m.files["ranker.onnx"].bytes == 1 and set(m.files) == {"ranker.onnx", "sub/tok.json"}
    assert m.metric("streamrec", "ndcg@10") == 0.1 and m.parent is None
    assert reg.rollback() == (v2, v1) and reg.current() == v1
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback()
    reg.promote(v2)
    assert reg.current() == v2
    refused = publish_dummy(reg, "c", make_current=False, status="refused")
    assert reg.current() == v2
    with pytest.raises(RegistryError, match="status is 'refused'"):
        reg.promote(refused)


def test_tampered_or_truncated_files_fail_verification(tmp_path: Path):
    reg = Registry(tmp_path)
    v = publish_dummy(reg, "abcdef")
    (reg.path(v) / "ranker.onnx").write_text("abcdeX")
    assert "sha256 mismatch" in reg.verify(v)[0]
    (reg.path(v) / "ranker.onnx").write_text("abc")
    assert "expected 6 bytes, got 3" in reg.verify(v)[0]
    with pytest.raises(RegistryError, match="cannot promote"):
        reg.promote(v)


def test_crash_during_rename_leaves_current_alone(tmp_path: Path, monkeypatch):
    reg = Registry(tmp_path)
    v1 = publish_dummy(reg)

    def boom(*a, **k):
        msg = "simulated crash"
        raise OSError(msg)

    monkeypatch.setattr(os, "rename", boom)
    with pytest.raises(OSError):
        publish_dummy(reg)
    monkeypatch.undo()
    assert reg.current() == v1 and reg.versions() == [v1]


WRITER = """
import sys, time
from pathlib import Path
from stream_app.registry import Registry
from tests.manifests import draft
reg = Registry(Path(sys.argv[1]))
version, staging = reg.staging()
for i in range(100):
    (staging / f"part{i}.bin").write_bytes(b"x" * 1000)
    print(i, flush=True)
    time.sleep(0.05)
reg.publish(staging, draft())
"""


def test_kill_9_mid_publish_never_exposes_a_half_written_version(tmp_path: Path):
    reg = Registry(tmp_path)
    v1 = publish_dummy(reg)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    for _ in range(5):
        proc.stdout.readline()  # it is between file writes now
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert reg.current() == v1 and reg.versions() == [v1]
    assert len(list(tmp_path.glob(".staging-*"))) == 1
    assert reg.staging()[0] == "v0003"  # a pending reservation's number is never handed out twice
    assert reg.gc_staging() == 1  # only the dead writer's reservation is collected
    v2 = publish_dummy(reg)
    assert v2 == "v0004" and reg.current() == v2 and reg.verify(v2) == []
    assert json.loads((tmp_path / "history.json").read_text()) == [v1, v2]
