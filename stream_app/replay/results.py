"""Per-system outcomes of a replay (one row per scored example) and the metrics computed from
them with the shared units of ``stream_app.core.metrics``.

An example is one scored event (``stream``) or one user's test item (``loo``). For each:
the list the system showed (catalogue indices, best first, length N = max K), the target's
rank (0-based; -1 = not in the list for ``stream``; full-catalogue rank for ``loo``), the
click-head AUC of the target against the system's other candidates, the purchase-head score
of the target, the interest slot of each listed item and the user's active slots (our model
only), the user's history length (activity buckets) and whether the target was a purchase.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from stream_app.core import metrics

BUCKETS = ("cold", "medium", "heavy")


@dataclass
class SystemResults:
    name: str
    n_list: int
    ranks: list[int] = field(default_factory=list)
    purchase: list[bool] = field(default_factory=list)
    auc_click: list[float] = field(default_factory=list)
    target_buy: list[float] = field(default_factory=list)
    lists: list[np.ndarray] = field(default_factory=list)
    slots: list[np.ndarray] = field(default_factory=list)
    active: list[np.ndarray] = field(default_factory=list)
    history: list[int] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)  # the target's time (epoch seconds)

    def add(
        self,
        *,
        rank: int,
        purchase: bool,
        auc_click: float,
        target_buy: float,
        items: np.ndarray,
        history: int,
        user: str,
        ts: float = math.nan,
        slots: np.ndarray | None = None,
        active: np.ndarray | None = None,
    ) -> None:
        self.ranks.append(int(rank))
        self.purchase.append(bool(purchase))
        self.auc_click.append(float(auc_click))
        self.target_buy.append(float(target_buy))
        self.lists.append(np.asarray(items, np.int64)[: self.n_list])
        self.history.append(int(history))
        self.users.append(user)
        self.ts.append(float(ts))
        if slots is not None:
            self.slots.append(np.asarray(slots, np.int64)[: self.n_list])
            self.active.append(np.asarray(active if active is not None else [], np.int64))

    def __len__(self) -> int:
        return len(self.ranks)


@dataclass
class MetricContext:
    """What list metrics need: item text vectors, categories, popularity prior, sizes."""

    ks: tuple[int, ...]
    text: np.ndarray  # [N_items, D]
    categories: list[tuple[str, ...]] | None  # None: the catalogue has none
    pop_prob: np.ndarray  # [N_items] in (0, 1] (smoothed interaction shares)
    n_items: int
    world: Any = None  # groundtruth.World of a synthetic log (true_interest_coverage@K)


def share_below(scores: np.ndarray, target_score: float) -> float:
    """Share of ``scores`` below the target's (ties count one half): a one-positive AUC."""
    if scores.size == 0 or not math.isfinite(target_score):
        return math.nan
    below = float((scores < target_score).sum()) + 0.5 * float((scores == target_score).sum())
    return below / scores.size


def smoothed_popularity(counts: np.ndarray) -> np.ndarray:
    """Add-one smoothed interaction shares, so never-seen items have a finite self-information."""
    c = np.asarray(counts, np.float64)
    return (c + 1.0) / (c.sum() + c.size)


def _nanmean(values: np.ndarray) -> float:
    v = values[np.isfinite(values)]
    return float(v.mean()) if v.size else math.nan


def _accuracy(res: SystemResults, idx: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    ranks = np.asarray(res.ranks, np.int64)[idx]
    out = metrics.ranking_metrics(ranks, ks)
    k = ks[0]  # one standard error of the mean NDCG at the first cutoff
    gains = metrics.ndcg_gains(ranks, k)
    out[f"ndcg@{k}_se"] = float(gains.std(ddof=1) / np.sqrt(gains.size)) if gains.size > 1 else 0.0
    out["auc_click"] = _nanmean(np.asarray(res.auc_click, np.float64)[idx])
    buy = np.asarray(res.purchase, bool)[idx]
    score = np.asarray(res.target_buy, np.float64)[idx]
    ok = np.isfinite(score)
    out["auc_purchase"] = metrics.auc(buy[ok], score[ok])["auc"] if ok.any() else math.nan
    out["examples"] = int(idx.size)
    return out


def _lists_metrics(res: SystemResults, ctx: MetricContext, k: int) -> dict[str, float]:
    lists = [lst[:k] for lst in res.lists]
    nonempty = [lst for lst in lists if lst.size]
    out: dict[str, float] = {}
    out[f"coverage@{k}"] = metrics.catalogue_coverage(
        nonempty or [np.zeros(0, np.int64)], ctx.n_items
    )["coverage"]
    out[f"ild@{k}"] = metrics.intra_list_diversity(ctx.text[lst] for lst in nonempty)["ild"]
    if ctx.categories is not None:
        cats = ctx.categories
        out[f"category_diversity@{k}"] = metrics.category_diversity(
            [[cats[i] for i in lst] for lst in nonempty]
        )["category_diversity"]
    if res.slots:
        out[f"interest_coverage@{k}"] = metrics.interest_coverage(
            [s[:k] for s in res.slots], [a.tolist() for a in res.active]
        )["interest_coverage"]
    out[f"novelty@{k}"] = metrics.novelty(nonempty, ctx.pop_prob)["novelty"]
    if ctx.world is not None:
        out[f"true_interest_coverage@{k}"] = ctx.world.coverage(res, k)
    return out


def activity_buckets(history: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Bucket per example (0 cold, 1 medium, 2 heavy) by tertiles of the history length, and
    labels naming each bucket's range."""
    h = np.asarray(history, np.int64)
    if h.size == 0:
        return np.zeros(0, np.int64), [f"{b}" for b in BUCKETS]
    lo, hi = (int(x) for x in np.quantile(h, [1 / 3, 2 / 3]))
    bucket = np.where(h <= lo, 0, np.where(h <= hi, 1, 2))
    labels = [f"cold (<= {lo})", f"medium ({lo + 1}-{hi})", f"heavy (> {hi})"]
    return bucket, labels


def system_metrics(res: SystemResults, ctx: MetricContext, by_type: bool) -> dict[str, Any]:
    """Flat metrics over every example, plus ``by_event_type`` and ``by_activity`` blocks."""
    n = len(res)
    everything = np.arange(n)
    out: dict[str, Any] = _accuracy(res, everything, ctx.ks)
    for k in ctx.ks:
        out.update(_lists_metrics(res, ctx, k))
    if by_type:
        buy = np.asarray(res.purchase, bool)
        out["by_event_type"] = {
            "click": _accuracy(res, np.flatnonzero(~buy), ctx.ks),
            "purchase": _accuracy(res, np.flatnonzero(buy), ctx.ks),
        }
    bucket, labels = activity_buckets(np.asarray(res.history))
    k0 = ctx.ks[0]
    out["by_activity"] = {
        label: {
            **{
                m: v
                for m, v in _accuracy(res, np.flatnonzero(bucket == b), (k0,)).items()
                if m in (f"ndcg@{k0}", f"hr@{k0}", "examples")
            }
        }
        for b, label in enumerate(labels)
    }
    return out


def curves(res: SystemResults, max_k: int) -> dict[str, list[Any]]:
    """HR@k and NDCG@k for k = 1..max_k (the metric-vs-K plot)."""
    ranks = np.asarray(res.ranks, np.int64)
    ks = list(range(1, max_k + 1))
    return {
        "k": ks,
        "hr": [metrics.hit_rate(ranks, k)[f"hr@{k}"] for k in ks],
        "ndcg": [metrics.ndcg(ranks, k)[f"ndcg@{k}"] for k in ks],
    }


SystemRow = dict[str, Any]  # metric -> value, plus the by_event_type / by_activity blocks
_RESULT = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")


class ReplayData(BaseModel):
    model_config = _RESULT

    items: str
    events: str
    events_sha256: str
    n_events: int
    n_items: int
    has_categories: bool


class ReplayModel(BaseModel):
    """The evaluated version (and the ablation versions beside it)."""

    model_config = _RESULT

    registry: str
    version: str
    ablation_versions: dict[str, str]
    compared: dict[str, str] = Field(default_factory=dict)  # --compare NAME=VERSION
    engine: str = "ranker-v1"  # the main version's engine kind
    k: int
    split: str
    train_until: float | None


class KafkaRun(BaseModel):
    """``--via-kafka``: delivery, throughput and latency through the real topics."""

    model_config = _RESULT

    events_produced: int
    recommendations: int
    events_without_recommendation: int
    scored_without_list: int
    other_model_version: int
    throughput_events_per_s: float
    worker_latency_ms: dict[str, float]
    end_to_end_ms: dict[str, float]
    produce_s: float = 0.0
    wall_s: float = 0.0
    rate: float | None = None
    topics: dict[str, Any] = Field(default_factory=dict)
    started_worker: bool = False
    # every latency measured (ms), for the report's plot; left out of the JSON
    latency_samples: dict[str, list[float]] = Field(default_factory=dict, exclude=True)


@dataclass(frozen=True)
class ReplayContext:
    """What the run built that a caller scoring more systems on the same events needs
    (``--via-kafka``); in memory only."""

    cat: Any  # replay.catalogue.Catalogue
    metrics: MetricContext
    world: Any  # groundtruth.World or None
    cut: int | None = None  # stream: index of the first scored event
    chosen: set[str] | None = None  # stream: users scored (None: all)


class ReplayResult(BaseModel):
    """``streamrec replay``: per system its metrics (``systems``), the curves and the MMR
    sweep behind the plots, the data, the evaluated versions and the run's counts and times."""

    model_config = ConfigDict(**_RESULT, arbitrary_types_allowed=True)

    protocol: Literal["stream", "loo"]
    ks: list[int]
    systems: dict[str, SystemRow]
    curves: dict[str, dict[str, list[Any]]]
    sweep: list[dict[str, float]] = Field(default_factory=list)
    counts: dict[str, Any] = Field(default_factory=dict)
    timing: dict[str, float] = Field(default_factory=dict)
    data: ReplayData
    model: ReplayModel
    options: dict[str, Any] = Field(default_factory=dict)
    descriptions: dict[str, str] = Field(default_factory=dict)
    missing: dict[str, str] = Field(default_factory=dict, description="Ablations not run: why.")
    seconds: float = 0.0
    pop_equals_loo_popularity_eval: bool | None = None
    kafka: KafkaRun | None = None
    context: ReplayContext | None = Field(None, exclude=True, repr=False)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
