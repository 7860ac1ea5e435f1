"""The worker's check of a graph against ``schemas.onnx_spec`` at load: an optional tensor
(added to the contract later, e.g. tower-v2's ``buy_prior``) may be missing from a graph
exported before it, everything else must match by name and dtype."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from model_export.export import _export  # noqa: E402
from model_export.tower.modeling import (  # noqa: E402
    HeadsExport,
    TowerConfig,
    TowerModel,
    UserTowerExport,
)
from schemas.onnx_spec import HEADS, USER_TOWER, GraphSpec, TensorSpec  # noqa: E402
from stream_app.serving.sessions import ModelLoadError, open_session  # noqa: E402

CFG = TowerConfig(text_dim=8, num_dim=2, d=8, k=2, recent_len=4, n_items=5, dropout=0.0)


def _graphs(tmp_path: Path, buy_prior: bool) -> tuple[Path, Path]:
    torch.manual_seed(0)
    cfg = TowerConfig(**{**CFG.__dict__, "use_buy_prior": buy_prior})  # type: ignore[arg-type]
    model = TowerModel(cfg).eval()
    b, n_rec, n = 2, cfg.recent_len, 3
    user_args = (
        torch.randn(b, n_rec, cfg.feat_dim),
        torch.ones(b, n_rec),
        torch.zeros(b, n_rec, dtype=torch.long),
        torch.zeros(b, n_rec),
    )
    out = model.user(*user_args)
    heads_args: tuple[Any, ...] = (
        out.interests,
        out.weights,
        torch.randn(b, n, cfg.feat_dim),
        torch.zeros(b, n),
    )
    user_spec, heads_spec = (USER_TOWER, HEADS) if buy_prior else (
        USER_TOWER.required(), HEADS.required())  # fmt: skip
    if buy_prior:
        heads_args = (*heads_args, out.buy_prior)
    d = tmp_path / ("new" if buy_prior else "old")
    d.mkdir()
    return (
        _export(UserTowerExport(model.user), user_args, user_spec, d, "v1"),
        _export(HeadsExport(model.heads), heads_args, heads_spec, d, "v1"),
    )


@pytest.mark.parametrize("buy_prior", [True, False])
def test_graphs_with_and_without_the_optional_tensor_load(tmp_path: Path, buy_prior: bool):
    user, heads = _graphs(tmp_path, buy_prior)
    u = open_session(user, USER_TOWER, "cpu")
    h = open_session(heads, HEADS, "cpu")
    assert ("buy_prior" in [o.name for o in u.get_outputs()]) is buy_prior
    assert ("buy_prior" in [i.name for i in h.get_inputs()]) is buy_prior


def test_a_missing_required_tensor_or_a_wrong_dtype_is_refused_with_its_name(tmp_path: Path):
    user, heads = _graphs(tmp_path, True)
    renamed = GraphSpec(
        HEADS.file, (*HEADS.inputs, TensorSpec("price", "float32", ("batch",))), HEADS.outputs
    )
    with pytest.raises(ModelLoadError, match=r"input 'price' expected tensor\(float\), got None"):
        open_session(heads, renamed, "cpu")
    as_int = GraphSpec(
        HEADS.file,
        tuple(
            TensorSpec(t.name, "int64", t.axes, t.optional) if t.name == "buy_prior" else t
            for t in HEADS.inputs
        ),
        HEADS.outputs,
    )
    with pytest.raises(ModelLoadError, match=r"input 'buy_prior' expected tensor\(int64\)"):
        open_session(heads, as_int, "cpu")
    more = GraphSpec(
        USER_TOWER.file,
        USER_TOWER.inputs,
        (*USER_TOWER.outputs, TensorSpec("mood", "float32", ("batch",))),
    )
    with pytest.raises(ModelLoadError, match="outputs expected"):
        open_session(user, more, "cpu")
