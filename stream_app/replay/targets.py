"""The engine targets a replay can show (issue 11), each with its figures from one run and a
verdict: served accuracy against the model alone, against co-occurrence and the compared
versions, the purchase head against the baselines, K interests against one, and what
diversification costs. A target whose systems are not in the run is left out.

All comparisons are on the same events (stream) or the same held-out users (loo); ± is one
standard error of each system's mean NDCG (not of the paired difference: conservative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAIN, PLAIN, SINGLE, SINGLE_PLAIN = (
    "streamrec",
    "no-diversity",
    "single-interest",
    "single-interest-no-div",
)
MODEL_ALONE, BASELINES = "ranker-only", ("pop", "cooc")
OURS = {MAIN, PLAIN, SINGLE, SINGLE_PLAIN, MODEL_ALONE, "no-text"}


@dataclass(frozen=True)
class Target:
    name: str
    measured: str
    met: bool


def _rel(a: float, b: float) -> float:
    return (a - b) / b if b else math.nan


def _nd(row: dict[str, Any], k: int) -> str:
    se = row.get(f"ndcg@{k}_se")
    return f"{row[f'ndcg@{k}']:.4f}" + (f" ± {se:.4f}" if isinstance(se, float) else "")


def targets(systems: dict[str, dict[str, Any]], k: int = 10) -> list[Target]:
    """The targets that the systems present in ``systems`` (replay rows) can decide."""
    s, out, nd = systems, [], f"ndcg@{k}"
    main = s.get(MAIN)
    if main is None:
        return []
    if MODEL_ALONE in s:
        ref = s[MODEL_ALONE][nd]
        for name, tol, label in ((PLAIN, 0.02, "plain top-K"), (MAIN, 0.04, "served list")):
            if name in s:
                r = _rel(s[name][nd], ref)
                out.append(
                    Target(
                        f"{label} within {tol:.0%} of the model over the whole catalogue "
                        f"(NDCG@{k})",
                        f"{s[name][nd]:.4f} vs {ref:.4f} ({r:+.1%})",
                        r >= -tol - 1e-9,
                    )
                )
    rivals = [n for n in s if n not in OURS and n not in BASELINES] + ["cooc"]
    for rival in rivals:
        if rival in s:
            out.append(
                Target(
                    f"served list beats {rival} (NDCG@{k})",
                    f"{_nd(main, k)} vs {_nd(s[rival], k)}",
                    main[nd] > s[rival][nd],
                )
            )
    base = {b: s[b].get("auc_purchase", math.nan) for b in BASELINES if b in s}
    base = {b: v for b, v in base.items() if v == v}
    ours = main.get("auc_purchase", math.nan)
    if base and ours == ours:
        best = max(base, key=lambda b: base[b])
        out.append(
            Target(
                "p_purchase ranks purchases above every baseline (AUC)",
                f"{ours:.3f} vs {best} {base[best]:.3f}",
                ours > base[best],
            )
        )
    if PLAIN in s and SINGLE_PLAIN in s:
        r = _rel(s[PLAIN][nd], s[SINGLE_PLAIN][nd])
        out.append(
            Target(
                f"K interests vs one, plain top-K: NDCG@{k} >= +3 %",
                f"{s[PLAIN][nd]:.4f} vs {s[SINGLE_PLAIN][nd]:.4f} ({r:+.1%})",
                r >= 0.03,
            )
        )
        cov = f"true_interest_coverage@{k}"
        if cov in s[PLAIN] and cov in s[SINGLE_PLAIN]:
            r = _rel(s[PLAIN][cov], s[SINGLE_PLAIN][cov])
            out.append(
                Target(
                    f"K interests vs one, plain top-K: true interest coverage@{k} >= +20 %",
                    f"{s[PLAIN][cov]:.3f} vs {s[SINGLE_PLAIN][cov]:.3f} ({r:+.1%})",
                    r >= 0.20,
                )
            )
    if SINGLE in s:
        r = _rel(main[nd], s[SINGLE][nd])
        out.append(
            Target(
                f"K interests vs one, served: not below (NDCG@{k})",
                f"{main[nd]:.4f} vs {s[SINGLE][nd]:.4f} ({r:+.1%})",
                r >= 0.0,
            )
        )
    ild = f"ild@{k}"
    if PLAIN in s and ild in main and ild in s[PLAIN]:
        gain, cost = _rel(main[ild], s[PLAIN][ild]), -_rel(main[nd], s[PLAIN][nd])
        out.append(
            Target(
                f"diversification: ILD@{k} >= +15 % over plain top-K for <= 2 % NDCG@{k}",
                f"ILD {gain:+.1%}, NDCG {-cost:+.1%}",
                gain >= 0.15 - 1e-9 and cost <= 0.02 + 1e-9,
            )
        )
    return out
