"""ONNX export of the encoder, item tower and ranker, each gated by a parity check.

Every export is re-loaded with onnxruntime (CPU) and compared with torch on real inputs
(atol 1e-4); a mismatch raises ``ParityError`` and nothing is published. The model version
is written into each graph's metadata.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from model_export.encoder import TextEncoder, tokenize
from model_export.modeling import ItemTowerExport, MultiTaskRanker, RankerExport
from schemas.onnx_spec import ENCODER, ITEM_TOWER, PARITY_ATOL, RANKER, GraphSpec

OPSET = 17


class ParityError(RuntimeError):
    """ONNX Runtime and torch disagree beyond tolerance: the export is refused."""


def _export(module: nn.Module, args: tuple, spec: GraphSpec, out_dir: Path, version: str) -> Path:
    path = out_dir / spec.file
    module.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=spec.input_names,
            output_names=spec.output_names,
            dynamic_axes=spec.dynamic_axes(),
            opset_version=OPSET,
            dynamo=False,
        )
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    meta.update({"model_version": version, "graph": spec.file})
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def check_parity(
    path: Path, module: nn.Module, args: tuple, spec: GraphSpec, atol: float = PARITY_ATOL
) -> float:
    """Max |ORT - torch| over all outputs; raises ParityError above ``atol``."""
    module.eval()
    with torch.no_grad():
        expected = module(*args)
    if isinstance(expected, torch.Tensor):
        expected = (expected,)
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {name: a.numpy() for name, a in zip(spec.input_names, args, strict=True)}
        got = sess.run(spec.output_names, feeds)
    except Exception as exc:  # a graph ORT cannot run fails the gate
        msg = f"{spec.file}: onnxruntime could not run the exported graph: {exc}"
        raise ParityError(msg) from exc
    worst = 0.0
    for name, e, g in zip(spec.output_names, expected, got, strict=True):
        e_np = e.numpy()
        if e_np.shape != g.shape:
            msg = f"{spec.file}:{name}: expected shape {e_np.shape}, got {g.shape}"
            raise ParityError(msg)
        if not np.isfinite(g).all():
            msg = f"{spec.file}:{name}: non-finite values from onnxruntime"
            raise ParityError(msg)
        worst = max(worst, float(np.abs(e_np - g).max(initial=0.0)))
    if worst > atol:
        msg = f"{spec.file}: parity check failed, max |onnx - torch| = {worst:.3g} > {atol}"
        raise ParityError(msg)
    return worst


def export_encoder(
    encoder: TextEncoder,
    tokenizer: object,
    texts: Sequence[str],
    out_dir: Path,
    version: str,
    file: str = ENCODER.file,
) -> float:
    """Export (input_ids, attention_mask) -> sentence_embedding; returns the parity error."""
    spec = GraphSpec(file, ENCODER.inputs, ENCODER.outputs)
    sample = list(texts[:8]) or ["an item", "another, longer item title with more words"]
    batch = tokenize(tokenizer, sample)
    args = (batch["input_ids"], batch["attention_mask"])
    path = _export(encoder, args, spec, out_dir, version)
    # parity on a different batch shape than the trace, to exercise the dynamic axes
    other = tokenize(tokenizer, list(texts[8:13]) or sample[:1])
    check_parity(path, encoder, (other["input_ids"], other["attention_mask"]), spec)
    return check_parity(path, encoder, args, spec)


def export_item_tower(
    model: MultiTaskRanker,
    text_vecs: np.ndarray,
    id_index: np.ndarray,
    num: np.ndarray,
    out_dir: Path,
    version: str,
) -> float:
    wrapper = ItemTowerExport(model.items)
    args = (
        torch.from_numpy(text_vecs[:64]).float(),
        torch.from_numpy(id_index[:64]).long(),
        torch.from_numpy(num[:64]).float(),
    )
    path = _export(wrapper, args, ITEM_TOWER, out_dir, version)
    return check_parity(path, wrapper, args, ITEM_TOWER)


def export_ranker(
    model: MultiTaskRanker, sample: dict[str, np.ndarray], out_dir: Path, version: str
) -> float:
    """``sample``: real inputs named as in RANKER (slots, ..., cand, cooc)."""
    wrapper = RankerExport(model)
    args = tuple(torch.from_numpy(np.ascontiguousarray(sample[n])) for n in RANKER.input_names)
    path = _export(wrapper, args, RANKER, out_dir, version)
    # a second shape (fewer users, other candidate count) checks the dynamic axes
    small = tuple(
        a[:1, :7] if n in ("cand", "cooc") else a[:1]
        for a, n in zip(args, RANKER.input_names, strict=True)
    )
    check_parity(path, wrapper, small, RANKER)
    return check_parity(path, wrapper, args, RANKER)
