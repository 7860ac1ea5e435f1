"""Engine tower-v2 on CPU vs CUDA: per batch of 64 events over 10,000 and 1,000,000 items, the
time of ``Recommender.score_batch`` (user tower, retrieval of the top 100 per interest over the
whole catalogue, the multi-task heads) on each, the ratio, and whether the top-K agree.

    bash bench/gpu_check.sh [--quick] [--registry DIR --version V] [--batches N] [--json]

CPU: the path as served (numpy exact retrieval, the faiss ANN index from 30,000 items on;
numpy BLAS on one thread as ``serving.blas_threads``, ORT's own intra-op threads). CUDA: the
same engine on a version opened with ``device=cuda``, which offers ``DeviceRetriever`` (item
matrix resident on the GPU, queries and outputs through IOBinding) and runs the tower and heads
with IOBinding. The CUDA side runs only when a GPU device node exists and a CUDA session really
starts; otherwise "no CUDA device: CPU rows only" and exit 0. A GPU that is present but where
CUDA does not start is exit 2 (the check exists to catch that); no model to run is exit 3.

Agreement: per user, the top-K (``top_k`` = 10) candidates by blended score of the CUDA run
against the CPU engine with exact retrieval (the ANN path is approximate by design, so at 1M
items the reference is a separate exact CPU run of the same batches): the same items with
scores within 1e-3, a differing item allowed only as a near-tie at the K-th score. Exit 1 on
disagreement.

Model: a random-initialised tower-v2 (``model_export.tower.modeling``, d=64, K=4, L=20),
exported to ONNX on the fly with the project's exporter when torch is importable, or a registry
version (``--registry``/``--version``; its item tower computes the features, in chunks, from
random content vectors). Items: random unit retrieval vectors (chunked float32; no text
encoding); the random model's store keeps 32-d text vectors (only selection reads them).
Targets (H200-class GPU): 64 events x 1,000,000 items <= 5 ms per batch on CUDA and >= 10x
the CPU figure of the same run. ``--quick``: 10,000 items only, few batches.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # serving.blas_threads (the worker's default)

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from schemas.onnx_spec import HEADS, USER_TOWER, tower_feat_slices  # noqa: E402
from schemas.settings import ServingSettings  # noqa: E402
from stream_app.core.catalogue import ItemStore, item_numeric  # noqa: E402
from stream_app.core.engine import Bundle, Recommender, Scored  # noqa: E402
from stream_app.core.interests import InterestParams, InterestState, new_state  # noqa: E402
from stream_app.serving.device_retrieval import DeviceRetriever  # noqa: E402
from stream_app.serving.model import ServingVersion, TowerServing, open_version  # noqa: E402
from stream_app.serving.sessions import ModelLoadError, _gpu_present, open_session  # noqa: E402

BATCH = 64
PER_INTEREST = 100
TOP_K = 10
TOL = 1e-3
TARGET_MS, TARGET_RATIO = 5.0, 10.0
BIG = 1_000_000
NO_CUDA = "no CUDA device: CPU rows only"
OPSET = 17  # model_export.export.OPSET


class CannotRun(RuntimeError):
    """No model to check with (exit 3)."""


@dataclass
class Row:
    items: int
    cpu_path: str
    cpu_ms: float
    cpu_stages: dict[str, float]
    cuda_ms: float | None = None
    ratio: float | None = None
    agree: bool | None = None
    worst_diff: float | None = None
    target: str = "-"
    upload_ms: float | None = None
    dry_ms: float | None = None  # --device-on-cpu: the device path on the CPU provider
    dry_agree: bool | None = None
    dry_worst: float | None = None
    cuda_stages: dict[str, float] | None = None


# -- model ---------------------------------------------------------------------------------
def random_tower(out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """user_tower.onnx + heads.onnx of a random-initialised tower-v2, exported as the project
    does (legacy exporter, opset 17, the spec's names and dynamic axes; ``model_export.export``
    itself is not imported: it pulls in transformers, ~20 s here)."""
    import warnings

    import torch

    from model_export.tower.modeling import (
        HeadsExport,
        TowerConfig,
        TowerModel,
        UserTowerExport,
    )

    torch.manual_seed(seed)
    cfg = TowerConfig(text_dim=32, d=64, k=4, recent_len=20, n_items=0, dropout=0.0)
    model = TowerModel(cfg).eval()
    b, n_rec, n = 2, cfg.recent_len, 8
    user_args = (
        torch.randn(b, n_rec, cfg.feat_dim),
        torch.ones(b, n_rec),
        torch.zeros(b, n_rec, dtype=torch.long),
        torch.rand(b, n_rec),
    )
    with torch.no_grad():
        out = model.user(*user_args)
    heads_args = (
        out.interests,
        out.weights,
        torch.randn(b, n, cfg.feat_dim),
        torch.zeros(b, n),
        out.buy_prior,
    )
    graphs = ((UserTowerExport(model.user), user_args, USER_TOWER),
              (HeadsExport(model.heads), heads_args, HEADS))  # fmt: skip
    for module, args, spec in graphs:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                args,
                str(out_dir / spec.file),
                input_names=spec.input_names,
                output_names=spec.output_names,
                dynamic_axes=spec.dynamic_axes(),
                opset_version=OPSET,
                dynamo=False,
            )
    return {"k": cfg.k, "d": cfg.d, "recent_len": cfg.recent_len, "text_dim": cfg.text_dim}


def bench_version(graphs: Path, cfg: dict[str, Any], device: str) -> TowerServing:
    """A ``TowerServing`` over the two exported graphs, without a registry version (no encoder
    or item tower: the bench brings item features of its own). The engine path is the served
    one: ``tower``, ``queries``, ``score`` and ``retriever_for`` of the real class."""
    m = TowerServing.__new__(TowerServing)
    m.version, m.space, m.device, m.threads = f"random-tower-{device}", "bench", device, 0
    m.k, m.d, m.recent_len, m.text_dim = cfg["k"], cfg["d"], cfg["recent_len"], cfg["text_dim"]
    m.feat_dim = m.d + 2
    m.id_index, m.covisit = {}, None
    m.user_tower = open_session(graphs / USER_TOWER.file, USER_TOWER, device)
    m.heads = open_session(graphs / HEADS.file, HEADS, device)
    m.has_buy_prior = True
    m.slices = tower_feat_slices(m.d)
    m.on_cuda = m.user_tower.get_providers()[0] == "CUDAExecutionProvider"
    return m


def open_models(
    args: argparse.Namespace, tmp: Path, cuda: bool
) -> tuple[TowerServing, TowerServing | None, str]:
    if args.registry:
        from stream_app.registry import Registry

        reg = Registry(Path(args.registry))
        version = args.version or reg.require_current()
        opened = [open_version(reg, version, dev) for dev in (["cpu", "cuda"] if cuda else ["cpu"])]
        towers = [m for m in opened if isinstance(m, TowerServing)]
        if len(towers) != len(opened):
            msg = f"--version: expected a tower-v2 version, got {opened[0].engine_kind!r}"
            raise CannotRun(msg)
        return towers[0], towers[1] if cuda else None, f"registry {version}"
    try:
        cfg = random_tower(tmp)
    except ImportError as exc:
        msg = f"torch is not importable ({exc}): give --registry DIR [--version V]"
        raise CannotRun(msg) from None
    cpu_m = bench_version(tmp, cfg, "cpu")
    return cpu_m, bench_version(tmp, cfg, "cuda") if cuda else None, "random-init tower-v2"


# -- data ----------------------------------------------------------------------------------
def build_store(
    model: ServingVersion, n: int, item_tower: bool, seed: int = 0, chunk: int = 100_000
) -> ItemStore:
    """n live items: random unit retrieval vectors (or, with ``item_tower``, the version's item
    tower over random content vectors), in float32 chunks."""
    rng = np.random.default_rng(seed)
    store = ItemStore(model.text_dim, model.feat_dim, capacity=n)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        ids = [f"i{j}" for j in range(start, start + m)]
        text = rng.standard_normal((m, model.text_dim), dtype=np.float32)
        text /= np.linalg.norm(text, axis=1, keepdims=True)
        if item_tower:
            prices = rng.lognormal(3.0, 1.0, m).tolist()
            feats = model.item_features(text, ids, item_numeric(prices))
        else:
            v = rng.standard_normal((m, model.d), dtype=np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            # small click/purchase priors: the top-K is decided by the match, not by a prior
            # that lifts items from the edge of the retrieved 100 (where fp rounding may swap)
            bias = rng.normal(0.0, 0.1, (m, 2)).astype(np.float32)
            feats = np.concatenate([v, bias], 1)
        store.upsert(ids, text, feats.astype(np.float32), added_ts=[0.0] * m)
    return store


def make_states(model: ServingVersion, n_items: int, n: int, seed: int) -> list[InterestState]:
    rng = np.random.default_rng(seed)
    states = []
    for _ in range(n):
        s = new_state(model.k, model.text_dim, model.space)
        s.recent_items = [f"i{j}" for j in rng.integers(0, n_items, model.recent_len)]
        s.recent_ts = np.cumsum(rng.exponential(600.0, model.recent_len)).tolist()
        s.recent_kind = rng.integers(0, 2, model.recent_len).tolist()
        states.append(s)
    return states


# -- measuring -----------------------------------------------------------------------------
def top_k(scored: Scored, i: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = scored.score[i]
    order = np.argsort(-s, kind="stable")[:k]
    order = order[np.isfinite(s[order])]
    return scored.cand_rows[i][order], s[order]


def compare(a: Scored, b: Scored, k: int = TOP_K, tol: float = TOL) -> tuple[bool, float]:
    """(agree, worst |score diff|): per user the same top-k items with scores within ``tol``;
    an item in one list only is allowed when it ties the k-th score within ``tol``."""
    ok, worst = True, 0.0
    for i in range(len(a.states)):
        ra, sa = top_k(a, i, k)
        rb, sb = top_k(b, i, k)
        if ra.size != rb.size:
            return False, float("inf")
        if ra.size == 0:
            continue
        diff = float(np.abs(sa - sb).max())
        worst = max(worst, diff)
        ok &= diff <= tol
        for rows, scores, other_rows, other in ((ra, sa, rb, sb), (rb, sb, ra, sa)):
            only = ~np.isin(rows, other_rows)  # in this list only: a near-tie at the k-th
            ok &= bool((np.abs(scores[only] - other[-1]) <= tol).all())
    return bool(ok), worst


STAGES = ("tower", "retrieval", "heads")
_spent = dict.fromkeys(STAGES, 0.0)


def _timing(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _spent[stage] += time.perf_counter() - t0

    return wrapped


def instrument(rec: Recommender[Any]) -> Recommender[Any]:
    """Time the stages of ``rec``'s batches (instance attributes wrap the model's ``tower`` and
    ``score`` once per model, and the bundle's retriever's ``search``); the rest is host-side
    engine work (inputs, candidate union, gathers, slot match)."""
    model, retriever = rec.bundle.model, rec.bundle.retriever
    if not getattr(model, "_gpu_check_timed", False):
        model.tower = _timing("tower", model.tower)
        model.score = _timing("heads", model.score)
        model._gpu_check_timed = True
    if not getattr(retriever, "_gpu_check_timed", False):
        retriever.search = _timing("retrieval", retriever.search)  # type: ignore[method-assign]
        retriever._gpu_check_timed = True  # type: ignore[attr-defined]
    return rec


class Side:
    """One engine over the batch pool: ms per batch and agreement with the CPU reference."""

    def __init__(self, pool: list[list[InterestState]]) -> None:
        self.pool, self.i = pool, 0

    def next_batch(self) -> list[InterestState]:
        self.i += 1
        return self.pool[self.i % len(self.pool)]

    def time(
        self, rec: Recommender[Any], batches: int, warm: int = 2
    ) -> tuple[float, dict[str, float]]:
        """(median ms per batch, mean ms per batch by stage, with 'host' the rest)."""
        instrument(rec)
        for _ in range(warm):
            rec.score_batch(self.next_batch(), 0.0)
        for k in _spent:
            _spent[k] = 0.0
        times = []
        for _ in range(batches):
            t0 = time.perf_counter()
            rec.score_batch(self.next_batch(), 0.0)
            times.append((time.perf_counter() - t0) * 1000.0)
        stages = {k: v * 1000.0 / batches for k, v in _spent.items()}
        stages["host"] = float(np.mean(times)) - sum(stages.values())
        return float(np.median(times)), stages

    def agree(self, rec: Recommender[Any], ref: Recommender[Any]) -> tuple[bool, float]:
        from threadpoolctl import threadpool_limits

        results = []
        with threadpool_limits(os.cpu_count() or 1, user_api="blas"):  # the reference only
            for states in self.pool[:2]:
                results.append(compare(rec.score_batch(states, 0.0), ref.score_batch(states, 0.0)))
        return all(r[0] for r in results), max(r[1] for r in results)


def measure(
    n: int,
    cpu: ServingVersion,
    cuda: ServingVersion | None,
    batches: int,
    opts: ServingSettings,
    log: Callable[[str], None],
    item_tower: bool = False,
    device_on_cpu: bool = False,
) -> Row:
    params = InterestParams(k=cpu.k)
    t0 = time.perf_counter()
    store = build_store(cpu, n, item_tower)
    log(f"{n:,} items: store built in {time.perf_counter() - t0:.1f} s")
    side = Side([make_states(cpu, n, BATCH, seed) for seed in range(4)])
    cpu_rec = Recommender(Bundle(cpu, store), params, opts)
    t0 = time.perf_counter()
    cpu_rec.bundle.retriever.reindex()  # as the worker does at a swap: ANN from 30k items
    path = cpu_rec.bundle.retriever.kind
    log(f"{n:,} items: CPU retrieval {path} (index {time.perf_counter() - t0:.1f} s)")
    row = Row(n, path, *side.time(cpu_rec, batches))
    log(f"{n:,} items: CPU {row.cpu_ms:.1f} ms per batch")
    ref = cpu_rec
    if path != "exact":  # the reference for agreement: the same engine, exact on CPU
        ref = Recommender(Bundle(cpu, store), params, opts)  # not reindexed: exact
        assert ref.bundle.retriever.kind == "exact"
    if device_on_cpu:  # the device path's code on the CPU provider (no GPU needed)
        dry = Recommender(Bundle(cpu, store), params, opts)
        dry.bundle.retriever = DeviceRetriever(store, cpu.d, "cpu")
        dry.bundle.retriever.reindex()
        row.dry_ms, _ = side.time(dry, batches)
        row.dry_agree, row.dry_worst = side.agree(dry, ref)
        log(f"{n:,} items: device path on the CPU provider {row.dry_ms:.1f} ms per batch")
    if cuda is None:
        return row
    cuda_rec = Recommender(Bundle(cuda, store), params, opts)
    retriever = cuda_rec.bundle.retriever
    if not isinstance(retriever, DeviceRetriever) or retriever.device != "cuda":
        msg = f"the CUDA version did not offer a device retriever (got {retriever.kind})"
        raise ModelLoadError(msg)
    retriever.reindex()  # the upload
    row.upload_ms = retriever.last_upload_s * 1000.0
    row.cuda_ms, row.cuda_stages = side.time(cuda_rec, 5 * batches, 5)
    row.ratio = row.cpu_ms / row.cuda_ms
    row.agree, row.worst_diff = side.agree(cuda_rec, ref)
    if n >= BIG:
        met = row.cuda_ms <= TARGET_MS and row.ratio >= TARGET_RATIO
        row.target = "met" if met else "not met"
    return row


def fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_table(rows: list[Row], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("items", "CPU path", "CPU ms", "CUDA ms", "CPU/CUDA", "top-K agree", "target"):
        table.add_column(col, justify="right" if col.endswith(("ms", "CUDA", "items")) else "left")
    for r in rows:
        agree = "-" if r.agree is None else ("yes" if r.agree else "NO")
        table.add_row(
            f"{r.items:,}",
            r.cpu_path,
            fmt(r.cpu_ms, ".2f"),
            fmt(r.cuda_ms, ".2f"),
            fmt(r.ratio, ".1f") + ("x" if r.ratio is not None else ""),
            agree,
            r.target,
        )
    Console(width=120).print(table)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="10,000 items only, few batches")
    ap.add_argument("--registry", help="a registry dir: time its tower-v2 version")
    ap.add_argument("--version", help="the version (default: the registry's CURRENT)")
    ap.add_argument("--batches", type=int, default=0, help="timed CPU batches per size")
    ap.add_argument("--json", action="store_true", help="machine output (one JSON object)")
    ap.add_argument(
        "--device-on-cpu",
        action="store_true",
        help="also run the device path (DeviceRetriever + IOBinding code) on the CPU provider "
        "and check its top-K against the CPU engine: the CUDA code path, minus the GPU",
    )
    args = ap.parse_args(argv)
    sizes = [10_000] if args.quick else [10_000, BIG]
    batches = args.batches or (3 if args.quick else 10)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr if args.json else sys.stdout, flush=True)

    t_start = time.perf_counter()
    cuda = _gpu_present()  # CUDA is tried only where a GPU device node exists
    opts = ServingSettings(
        candidates=(PER_INTEREST - 4) * 5,  # per query (K+1 = 5): ceil(480 / 5) + 4 = 100
        top_k=TOP_K,
        explore=0,
        new_item_match=0.0,
    )
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        try:
            cpu_m, cuda_m, source = open_models(args, Path(tmp), cuda)
        except CannotRun as exc:
            print(f"gpu_check: {exc}", file=sys.stderr)
            return 3
        except ModelLoadError as exc:
            if not cuda:
                raise
            print(f"GPU device present but CUDA did not start: {exc}", file=sys.stderr)
            return 2
        if cuda_m is not None and not cuda_m.on_cuda:
            print("GPU device present but the CUDA version runs on CPU", file=sys.stderr)
            return 2
        log(f"model: {source}; providers CPU {cpu_m.user_tower.get_providers()[:1]}" + (
            f", CUDA {cuda_m.user_tower.get_providers()[:1]}" if cuda_m else ""))  # fmt: skip
        rows = []
        for n in sizes:
            try:
                row = measure(
                    n, cpu_m, cuda_m, batches, opts, log, bool(args.registry), args.device_on_cpu
                )
                rows.append(row)
            except ModelLoadError as exc:
                print(f"GPU device present but CUDA did not start: {exc}", file=sys.stderr)
                return 2
    total_s = time.perf_counter() - t_start
    title = f"engine tower-v2, batch of {BATCH} events, top {PER_INTEREST} per interest"
    if args.json:
        out = {"cuda": cuda, "rows": [asdict(r) for r in rows], "total_s": total_s}
        print(json.dumps(out))
    else:
        if not cuda:
            print(f"{NO_CUDA} (no /dev/nvidiactl or /dev/dxg)")
        print_table(rows, title)
        for r in rows:
            for side_name, stages in (("CPU", r.cpu_stages), ("CUDA", r.cuda_stages)):
                if stages:
                    parts = ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
                    print(f"{r.items:,} items, {side_name} ms per batch by stage: {parts}")
            if r.upload_ms is not None:
                print(f"{r.items:,} items: item matrix upload {r.upload_ms:.1f} ms; worst top-K "
                      f"score diff {fmt(r.worst_diff, '.2e')}")  # fmt: skip
            if r.dry_ms is not None:
                agree = "yes" if r.dry_agree else "NO"
                worst = fmt(r.dry_worst, ".2e")
                print(
                    f"{r.items:,} items: device path on the CPU provider {r.dry_ms:.2f} ms per "
                    f"batch, top-K agree {agree} (worst score diff {worst})"
                )
        if any(r.target != "-" for r in rows):
            print(
                f"target: {BIG:,} items <= {TARGET_MS:.0f} ms per batch on CUDA and "
                f">= {TARGET_RATIO:.0f}x CPU"
            )
        print(f"total {total_s:.0f} s")
    if any(r.agree is False or r.dry_agree is False for r in rows):
        print("top-K disagreement between CPU and CUDA", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
