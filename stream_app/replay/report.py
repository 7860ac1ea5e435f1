"""``--report DIR``: ``report.md`` (what was run and how to read it), ``metrics.json`` (the
whole result) and PNG plots drawn with matplotlib's object API (``Figure``: no pyplot state,
no display, no backend switched at import)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from stream_app.replay.results import ReplayResult

TABLE = (
    "hr@{k}",
    "ndcg@{k}",
    "mrr",
    "auc_click",
    "auc_purchase",
    "coverage@{k}",
    "ild@{k}",
    "category_diversity@{k}",
    "interest_coverage@{k}",
    "true_interest_coverage@{k}",
    "novelty@{k}",
)
PROTOCOLS = {
    "stream": (
        "The log is replayed in time order. Every system first sees the first {warm:.0%} of "
        "it (by time) without being scored. Then, for every later event, the list the system "
        "was showing that user just before the event (computed from everything strictly "
        "before it) is checked for the event's item; only then is the event applied. A "
        "user's first event is not scored (no list had been shown yet). Click and purchase "
        "events are also reported separately. Our model runs the worker's own core "
        "(interest update, retrieval, ranker, diversification)."
    ),
    "loo": (
        "Leave-one-out as in the RecBole / UniSRec papers: each user's items in time order, "
        "consecutive repeats merged; the last item is the test target, the one before it the "
        "validation item. Every system ranks the WHOLE catalogue (every item id of the events) "
        "for every user; items the user already interacted with are masked (except the test "
        "item); ties go to the lower catalogue index. Popularity and co-occurrence are fitted "
        "on what precedes each user's last two items; our model's ranking is its served list "
        "(retrieval, ranker, diversification) followed by every other item by ranker score."
    ),
}
READING = {
    "hr@K": "share of examples whose target is in the top K (higher is better)",
    "ndcg@K": "like HR@K but rewards higher positions: 1/log2(rank+2) per hit",
    "mrr": "mean 1/(rank+1) (stream: within the shown list; loo: full ranking)",
    "auc_click": "click head: chance the target outscores another candidate (0.5 = random)",
    "auc_purchase": (
        "purchase head: chance a purchase's target outscores a click's target "
        "(P(purchase | interaction) = p_purchase / p_click)"
    ),
    "coverage@K": "share of the catalogue that appears in some list",
    "ild@K": "intra-list diversity: mean 1 - cosine of the listed items' text vectors",
    "category_diversity@K": "share of listed item pairs with no category in common",
    "interest_coverage@K": "share of the user's active interest slots the list serves "
    "(trivially 1 with a single slot)",
    "true_interest_coverage@K": "synthetic logs only: share of the user's REAL interests "
    "(world.json, at the event's time) with at least one item of that topic in the list",
    "novelty@K": "mean self-information -log2 p(item) of listed items (higher = less popular)",
}


def _colors(result: ReplayResult) -> dict[str, str]:
    """One colour per system, the same in every plot."""
    return {name: f"C{n}" for n, name in enumerate(result.systems or result.curves)}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.4f}"
    return "–" if v is None else str(v)


def _columns(result: ReplayResult) -> list[str]:
    k = result.ks[0]
    cols = [c.format(k=k) for c in TABLE]
    for kk in result.ks[1:]:
        cols[2:2] = [f"hr@{kk}", f"ndcg@{kk}"]
    present = {key for row in result.systems.values() for key in row}
    return [c for c in cols if c in present]


def markdown_table(systems: dict[str, dict[str, Any]], columns: list[str]) -> str:
    lines = ["| system | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name, row in systems.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def plot_metric_vs_k(result: ReplayResult, path: Path) -> None:
    fig = Figure(figsize=(11, 4.2))
    axes = fig.subplots(1, 2)
    color = _colors(result)
    for name, c in result.curves.items():
        axes[0].plot(c["k"], c["hr"], marker=".", label=name, color=color.get(name))
        axes[1].plot(c["k"], c["ndcg"], marker=".", label=name, color=color.get(name))
    for ax, title in zip(axes, ("HR@K", "NDCG@K"), strict=True):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("K (list length)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Accuracy vs list length ({result.protocol} protocol)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_tradeoff(result: ReplayResult, path: Path) -> None:
    k = result.ks[0]
    rows = result.sweep
    fig = Figure(figsize=(6.5, 4.6))
    ax = fig.subplots()
    color = _colors(result)
    if rows:
        xs, ys = [r[f"ild@{k}"] for r in rows], [r[f"ndcg@{k}"] for r in rows]
        ax.plot(xs, ys, marker="o", color="0.45", label="streamrec, MMR lambda varied")
        for n, (r, x, y) in enumerate(zip(rows, xs, ys, strict=True)):
            ax.annotate(
                f"λ={r['lambda']:g}",
                (x, y),
                textcoords="offset points",
                xytext=(4, 6 if n % 2 else -12),
                fontsize=8,
            )
    for name, row in result.systems.items():
        px, py = row.get(f"ild@{k}"), row.get(f"ndcg@{k}")
        if isinstance(px, float) and isinstance(py, float) and math.isfinite(px + py):
            ax.scatter([px], [py], marker="s", s=50, color=color[name], label=name, zorder=3)
    ax.set_xlabel(f"intra-list diversity ILD@{k} (1 - cosine of text vectors)")
    ax.set_ylabel(f"NDCG@{k}")
    ax.set_title("Accuracy–diversity trade-off")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_activity(result: ReplayResult, path: Path) -> None:
    k = result.ks[0]
    systems = result.systems
    buckets = list(next(iter(systems.values()))["by_activity"]) if systems else []
    fig = Figure(figsize=(8, 4.4))
    ax = fig.subplots()
    width = 0.8 / max(len(systems), 1)
    for n, (name, row) in enumerate(systems.items()):
        vals = [row["by_activity"].get(b, {}).get(f"ndcg@{k}", math.nan) for b in buckets]
        ax.bar([i + n * width for i in range(len(buckets))], vals, width, label=name, color=f"C{n}")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(buckets))], buckets)
    ax.set_ylabel(f"NDCG@{k}")
    ax.set_xlabel("user activity (events/interactions before the scored one; tertiles)")
    ax.set_title("Accuracy by user activity")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_latency(latency: dict[str, list[float]], path: Path) -> None:
    fig = Figure(figsize=(7, 4.2))
    ax = fig.subplots()
    for name, values in latency.items():
        if values:
            ax.hist(values, bins=60, alpha=0.55, label=f"{name} (n={len(values)})")
    ax.set_xlabel("milliseconds")
    ax.set_ylabel("recommendations")
    ax.set_title("Event → recommendation latency (via Kafka)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def comparisons(result: ReplayResult) -> list[str]:
    """One line per question the ablations answer, read off the table."""
    k = result.ks[0]
    sy = result.systems
    nd, ild = f"ndcg@{k}", f"ild@{k}"
    lines = []

    def delta(a: str, b: str, key: str) -> str:
        return f"{key} {_fmt(sy[a].get(key))} vs {_fmt(sy[b].get(key))}"

    if "no-diversity" in sy:
        lines.append(
            f"- diversification (streamrec vs no-diversity, same scores): "
            f"{delta('streamrec', 'no-diversity', ild)}, "
            f"{delta('streamrec', 'no-diversity', nd)}"
        )
    if "single-interest" in sy:
        true = f"true_interest_coverage@{k}"
        line = (
            f"- several interests vs one (K={result.model.k} vs K=1, both as served): "
            f"{delta('streamrec', 'single-interest', nd)}, "
            f"{delta('streamrec', 'single-interest', ild)}"
        )
        if true in sy["streamrec"]:
            line += f", {delta('streamrec', 'single-interest', true)}"
        lines.append(line)
        if "single-interest-no-div" in sy and "no-diversity" in sy:
            lines.append(
                f"- several interests vs one, both with plain top-K: "
                f"{delta('no-diversity', 'single-interest-no-div', nd)}"
            )
    if "no-text" in sy:
        lines.append(
            f"- the language model's text vectors (streamrec vs no-text): "
            f"{delta('streamrec', 'no-text', nd)}"
        )
    for b in ("pop", "cooc"):
        if b in sy:
            lines.append(
                f"- against {b}: {delta('streamrec', b, nd)}, {delta('streamrec', b, f'hr@{k}')}"
            )
    return lines


def _markdown(result: ReplayResult, plots: dict[str, str]) -> str:
    k = result.ks[0]
    proto = result.protocol
    warm = result.options.get("warmup_frac", 0.8)
    m, d = result.model, result.data
    out = [f"# Replay report ({proto} protocol)", ""]
    out += [
        "## What was run",
        "",
        f"- events: `{d.events}` ({d.n_events} events, sha256 `{d.events_sha256[:12]}…`)",
        f"- items: `{d.items}` (catalogue of {d.n_items} items)",
        f"- model: `{m.version}` from `{m.registry}` (engine {m.engine}, K={m.k} interests, "
        f"trained with the `{m.split}` split)",
    ]
    for kind, v in m.ablation_versions.items():
        out.append(f"- {kind} ablation: version `{v}`")
    for name, v in m.compared.items():
        out.append(f"- {name}: version `{v}`, replayed side by side")
    if result.kafka is not None:
        out.append(
            "- through Kafka: events produced to the events topic, the running worker's "
            "recommendations consumed from the recommendations topic"
        )
    out += [
        "- counts: " + ", ".join(f"{a} {b}" for a, b in result.counts.items()),
        f"- took {result.seconds} s",
        "",
        "## Protocol",
        "",
        PROTOCOLS.get(proto, "").format(warm=warm),
        "",
        "Leakage guard: the model's manifest was checked before anything ran "
        + (
            "(trained with the LOO split on this exact events file)."
            if proto == "loo"
            else "(its last training target precedes the first scored event)."
        ),
        "",
    ]
    out += ["## Results", "", markdown_table(result.systems, _columns(result)), ""]
    if "streamrec" in result.systems:
        out += ["### What the comparisons say", "", *comparisons(result), ""]
    if proto == "stream":
        out += ["### By event type", ""]
        cols = [f"hr@{k}", f"ndcg@{k}", "mrr", "auc_click", "examples"]
        for kind in ("click", "purchase"):
            rows = {
                n: r["by_event_type"][kind]
                for n, r in result.systems.items()
                if "by_event_type" in r
            }
            out += [f"**{kind} events**", "", markdown_table(rows, cols), ""]
    repeats = result.counts.get("scored_purchases_of_the_previous_item", "0/0")
    n_rep, n_buy = (int(x) for x in str(repeats).split("/"))
    if proto == "stream" and n_buy and n_rep / n_buy > 0.5:
        out += [
            f"Note: {n_rep} of the {n_buy} scored purchases buy the item the user had just "
            "interacted with. The engine never lists that item back (it is the trigger), and "
            "baselines apply the same exclusion, so list metrics on purchase events are ~0 by "
            "design here; the purchase head is judged by `auc_purchase` (does a purchase's "
            "item get a higher p_purchase than a click's).",
            "",
        ]
    if result.missing:
        out += ["### Not run", ""]
        out += [f"- **{n}**: {why}" for n, why in result.missing.items()] + [""]
    out += ["## Systems", ""]
    out += [f"- **{n}**: {desc}" for n, desc in result.descriptions.items()] + [""]
    out += ["## How to read the metrics", ""]
    out += [f"- **{n}**: {desc}" for n, desc in READING.items()] + [""]
    out += ["## Plots", ""]
    explain = {
        "metric_vs_k": "HR and NDCG as the list grows from 1 to the largest K, one line per "
        "system. A line above another at every K is better at every list length.",
        "tradeoff": "Our model's list selection re-run with several MMR lambdas on the same "
        "scores (lambda 1 = pure score order, lower = more diverse): moving left-to-right "
        "buys diversity, moving down costs accuracy. Squares are the systems of the table.",
        "activity": "NDCG split by how much history the user had at scoring time (tertiles "
        "of the history length; the labels give the ranges). Cold users are where content "
        "(text) and popularity matter most.",
        "latency": "Distribution of the worker's own latency (event receipt -> send) and of "
        "end-to-end produce -> consume time.",
    }
    for key, file in plots.items():
        out += [f"### {key}", "", explain.get(key, ""), "", f"![{key}]({file})", ""]
    if result.kafka is not None:
        kafka = json.dumps(result.kafka.model_dump(mode="json"), indent=1)
        out += ["## Through Kafka", "", "```", kafka, "```", ""]
    return "\n".join(out)


def write(result: ReplayResult, out_dir: Path) -> dict[str, Path]:
    """Write the report; returns the written files by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plots: dict[str, str] = {}
    if result.curves:
        plot_metric_vs_k(result, out_dir / "metric_vs_k.png")
        plots["metric_vs_k"] = "metric_vs_k.png"
    if result.systems:
        plot_tradeoff(result, out_dir / "tradeoff.png")
        plots["tradeoff"] = "tradeoff.png"
        plot_activity(result, out_dir / "activity.png")
        plots["activity"] = "activity.png"
    latency = result.kafka.latency_samples if result.kafka is not None else {}
    if latency:
        plot_latency(latency, out_dir / "latency.png")
        plots["latency"] = "latency.png"
    (out_dir / "metrics.json").write_text(json.dumps(result.to_json(), indent=1) + "\n")
    (out_dir / "report.md").write_text(_markdown(result, plots) + "\n")
    files = {"report.md": out_dir / "report.md", "metrics.json": out_dir / "metrics.json"}
    files.update({k: out_dir / v for k, v in plots.items()})
    return files
