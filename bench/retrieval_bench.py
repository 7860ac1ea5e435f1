"""Retrieval over the whole catalogue: exact vs ANN (``stream_app.core.ann``), one table.

    .venv/bin/python bench/retrieval_bench.py [--sizes 10000,100000,1000000] [--batches 30]

Per catalogue size and vector set: ms per batch of 64 events x K=4 queries (median, p99),
recall@100 against exact search, index build time, add and remove time per item, memory; then
the exact/ANN crossover that sets ``ANN_MIN_ITEMS``; each target marked met / not met.

Vector sets. ``clustered``: items drawn around 10,000 centres whose structure comes from real
sentence vectors reduced to d dims by PCA: ``--vectors`` (``make bench`` passes the bench
model's catalogue, the same on every machine), else the first of the pretrained encoder's
cached catalogue vectors under ``~/.cache/streamrec/text-vectors`` (what this machine happened
to encode: recall@100 moved from 0.95 to 0.84 at 1M items between two caches), else a
synthetic power-law spectrum (said in the header); cluster sizes Zipf-like, item norms
log-normal;
queries are user-interest-like: the mean of 5 items of one cluster (picked by size) plus
noise. ``gaussian``: iid N(0, 1) items and queries, the worst case for any ANN index.

How the ANN library was picked (same machine, 256 queries x 1M clustered items, d=64, top 100,
one thread): usearch HNSW 50-100 ms per batch and 220 s to build; faiss IVF-Flat 90-200 ms,
IVF-SQ8 80 ms, IVF-RaBitQ fast-scan 65-85 ms; faiss IVF-PQ fast-scan (4-bit, one sub-quantizer
per dimension) 12-16 ms for the scan, plus the exact refine. A numpy IVF batched by cell is
memory-bound (a batch's probes cover nearly every cell, so it reads the whole catalogue: 70
ms). numpy BLAS is limited to one thread, as in the worker (serving.blas_threads); the ANN rows are
timed once per ``--threads`` value (faiss's OpenMP threads: the worker's serving.ann_threads).
The PQ codes are of each item's residual from its cell centroid (``stream_app.core.ann``):
recall@100 at 1M items went from 0.940 to 0.968 at the same cost (nprobe 31, refine 4; 2
threads) and refine 3 keeps 0.96.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stream_app.core.ann import ANN_MIN_ITEMS, AnnRetriever  # noqa: E402
from stream_app.core.retrieval_ann import CatalogueIndex, ExactRetriever  # noqa: E402

EVENTS, K, TOP = 64, 4, 100
TARGET_MS, TARGET_RECALL = 20.0, 0.95
CENTRES = 10_000
TEXT_CACHE = Path.home() / ".cache" / "streamrec" / "text-vectors"


@dataclass
class Row:
    size: int
    data: str
    method: str
    ms_median: float
    ms_min: float
    ms_p99: float
    recall: float | None
    build_s: float
    add_us: float
    remove_us: float
    memory_mb: float


def _encoder_vectors(path: Path) -> np.ndarray:
    """A version's ``catalog_vectors.npz`` (its items' pretrained text vectors) or a
    text-vector cache file (``vecs``)."""
    with np.load(path) as z:
        return z["text" if "text" in z.files else "vecs"].astype(np.float64)


def text_structure(
    d: int, rng: np.random.Generator, vectors: Path | None = None
) -> tuple[np.ndarray, str]:
    """[M, d] unit-scale points carrying real sentence-vector structure: PCA of the
    ``--vectors`` file (``make bench``: the bench world's 10,000 item texts through the
    pretrained encoder, the same on every machine), else of the first encoder vector cache
    found (whatever this machine encoded before: figures differ between machines), else a
    synthetic power-law spectrum."""
    cached = sorted(TEXT_CACHE.glob("*.npz")) if TEXT_CACHE.is_dir() else []
    caches = [vectors] if vectors is not None else cached
    x = np.zeros((0, 0))
    for cache in caches:  # the first that holds a d-dim PCA (tiny test models cache too)
        x = _encoder_vectors(cache)
        if len(x) >= 4 * d and x.shape[1] >= d:
            kind = "encoder vectors" if vectors is not None else "cached encoder vectors"
            source = f"{len(x)} {kind} ({cache.parent.name}/{cache.name}), PCA to {d} dims"
            break
    if len(x) < 4 * d or x.shape[1] < d:
        spectrum = 1.0 / np.arange(1, 385) ** 0.7
        x = rng.standard_normal((2000, 384)) * spectrum
        source = "no encoder vector cache: synthetic power-law spectrum"
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xp = x @ vt[:d].T
    return (xp / np.sqrt((xp**2).sum(1).mean())).astype(np.float32), source


def clustered(
    n_items: int, d: int, n_queries: int, rng: np.random.Generator, vectors: Path | None = None
) -> tuple[np.ndarray, np.ndarray, str]:
    base, source = text_structure(d, rng, vectors)
    chol = np.linalg.cholesky(np.cov(base.T) + 1e-6 * np.eye(d))
    centres = base[rng.integers(0, len(base), CENTRES)]
    centres = (centres + 0.7 * rng.standard_normal((CENTRES, d)) @ chol.T).astype(np.float32)
    weight = rng.permutation(1.0 / np.arange(1, CENTRES + 1) ** 0.8)
    label = rng.choice(CENTRES, n_items, p=weight / weight.sum())
    sigma = 0.35 / np.sqrt(d) * float(np.sqrt((centres**2).sum(1).mean()))
    items = centres[label] + sigma * rng.standard_normal((n_items, d), dtype=np.float32)
    items *= rng.lognormal(0.0, 0.25, (n_items, 1)).astype(np.float32)
    members = np.argsort(label, kind="stable")
    count = np.bincount(label, minlength=CENTRES)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    picked = rng.choice(CENTRES, n_queries, p=count / count.sum())
    take = start[picked, None] + rng.integers(0, count[picked, None], (n_queries, 5))
    queries = items[members[take]].mean(1)
    queries += sigma * rng.standard_normal((n_queries, d), dtype=np.float32)
    return items.astype(np.float32), queries.astype(np.float32), source


def gaussian(
    n_items: int, d: int, n_queries: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, str]:
    items = rng.standard_normal((n_items, d), dtype=np.float32)
    return items, rng.standard_normal((n_queries, d), dtype=np.float32), "iid N(0, 1)"


def time_batches(index: CatalogueIndex, batches: list[np.ndarray], n: int) -> list[float]:
    """ms per batch: the function a device check times (one search per batch of 64 x K)."""
    valid = np.ones(batches[0].shape[0], bool)
    index.search(batches[0], valid, n)  # warm-up: buffers, caches
    out = []
    for q in batches:
        t = time.perf_counter()
        index.search(q, valid, n)
        out.append((time.perf_counter() - t) * 1e3)
    return out


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [
        len(set(f[f >= 0].tolist()) & set(t[t >= 0].tolist()))
        for f, t in zip(found, truth, strict=True)
    ]
    return float(np.sum(hits) / max(1, np.count_nonzero(truth >= 0)))


def update_cost(index: CatalogueIndex, items: np.ndarray, count: int) -> tuple[float, float]:
    """(add, remove) µs per item, one item per call as the catalogue topic delivers them:
    ``count`` new rows past the end, then the same rows removed (compaction included). The
    arrays' capacity growth (amortised doubling) happens before the clock starts."""
    rows = np.arange(items.shape[0], items.shape[0] + count)
    vecs = items[:count] * 0.5
    index.upsert(rows[-1:], vecs[-1:])
    index.remove(rows[-1:])
    t = time.perf_counter()
    for i in range(count):
        index.upsert(rows[i : i + 1], vecs[i : i + 1])
    add = (time.perf_counter() - t) / count * 1e6
    t = time.perf_counter()
    for i in range(count):
        index.remove(rows[i : i + 1])
    return add, (time.perf_counter() - t) / count * 1e6


def run_size(
    size: int, data: str, args: argparse.Namespace, rng: np.random.Generator
) -> tuple[list[Row], str]:
    per = EVENTS * K
    items, queries, source = (
        clustered(size, args.dim, per * args.batches, rng, args.vectors)
        if data == "clustered"
        else gaussian(size, args.dim, per * args.batches, rng)
    )
    batches = [queries[i : i + per] for i in range(0, len(queries), per)]
    t = time.perf_counter()
    exact = ExactRetriever.build(items)
    exact_build = time.perf_counter() - t
    gt_batches = batches[: args.recall_batches]
    truth = np.vstack([exact.search(q, np.ones(per, bool), TOP) for q in gt_batches])
    exact_times = time_batches(exact, batches[: max(3, args.batches // (1 + size // 100_000))], TOP)
    rows = [row(size, data, "exact", exact_times, 1.0, exact_build, exact, items, args)]
    if size >= 1000:
        t = time.perf_counter()
        ann = AnnRetriever.build(items, threads=max(args.threads))
        build = time.perf_counter() - t
        found = np.vstack([ann.search(q, np.ones(per, bool), TOP) for q in gt_batches])
        recall = recall_at(found, truth)  # the same results on any number of threads
        for threads in args.threads:
            ann.threads = threads
            times = time_batches(ann, batches, TOP)
            method = f"ann {ann.nprobe}/{len(ann._centroids)} x{ann.refine} t{threads}"
            rows.append(row(size, data, method, times, recall, build, ann, items, args))
    return rows, source


def row(
    size: int,
    data: str,
    method: str,
    times: list[float],
    recall: float,
    build: float,
    index: CatalogueIndex,
    items: np.ndarray,
    args: argparse.Namespace,
) -> Row:
    add, remove = update_cost(index, items, args.updates)
    return Row(
        size,
        data,
        method,
        float(np.median(times)),
        float(np.min(times)),
        float(np.percentile(times, 99)),
        recall,
        build,
        add,
        remove,
        index.memory_bytes() / 2**20,
    )


def crossover(
    dim: int, sizes: list[int], rng: np.random.Generator, vectors: Path | None = None
) -> list[tuple[int, float, float, float]]:
    """(size, exact ms, ann ms, median of exact/ann per batch) on clustered vectors: 20
    batches, each searched by both indexes back to back, so both see the same machine load."""
    out = []
    for size in sizes:
        items, queries, _ = clustered(size, dim, EVENTS * K * 20, rng, vectors)
        batches = [queries[i : i + EVENTS * K] for i in range(0, len(queries), EVENTS * K)]
        ex, an = ExactRetriever.build(items), AnnRetriever.build(items)
        pairs = np.array(
            [(time_batches(ex, [q], TOP)[0], time_batches(an, [q], TOP)[0]) for q in batches]
        )
        ratio = float(np.median(pairs[:, 0] / pairs[:, 1]))
        out.append((size, float(np.median(pairs[:, 0])), float(np.median(pairs[:, 1])), ratio))
    return out


def exact_methods(
    dim: int, rng: np.random.Generator, vectors: Path | None = None
) -> list[tuple[str, float, float]]:
    """(method, ms median, median of today's ms / its ms per batch) for exact top-100 over 10k
    clustered items: today's ``retrieval.ExactRetriever`` (product + argpartition of every
    score), ``ExactRetriever`` here, faiss ``IndexFlatIP``, and the ONNX Runtime Gemm + TopK
    graph the served engine uses as its exact stage on CPU (``serving.device_retrieval``, one
    thread); each batch searched by all of them back to back."""
    import faiss

    from stream_app.core.catalogue import ItemStore
    from stream_app.core.retrieval import ExactRetriever as TodayExact
    from stream_app.serving.device_retrieval import DeviceRetriever

    items, queries, _ = clustered(10_000, dim, EVENTS * K * 20, rng, vectors)
    store = ItemStore(1, dim, capacity=len(items))
    store.upsert([str(i) for i in range(len(items))], np.zeros((len(items), 1), np.float32), items)
    flat = faiss.IndexFlatIP(dim)
    flat.add(items)
    faiss.omp_set_num_threads(1)
    valid = np.ones(EVENTS * K, bool)
    methods = {
        "today: matmul + argpartition": TodayExact(store, dim).search,
        "ExactRetriever (grouped max)": ExactRetriever.build(items).search,
        "faiss IndexFlatIP": lambda q, v, n: flat.search(q, n)[1],
        "served: ORT Gemm + TopK (CPU)": DeviceRetriever(store, dim, "cpu", threads=1).search,
    }
    times: dict[str, list[float]] = {name: [] for name in methods}
    for i in range(0, len(queries), EVENTS * K):
        for name, search in methods.items():
            search(queries[i : i + EVENTS * K], valid, TOP)  # warm, then timed
            t = time.perf_counter()
            search(queries[i : i + EVENTS * K], valid, TOP)
            times[name].append((time.perf_counter() - t) * 1e3)
    base = np.array(times["today: matmul + argpartition"])
    return [
        (k, float(np.median(v)), float(np.median(base / np.array(v)))) for k, v in times.items()
    ]


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000", help="catalogue sizes")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batches", type=int, default=30, help="timed batches of 64 x 4 queries")
    ap.add_argument("--recall-batches", type=int, default=4, help="batches scored for recall")
    ap.add_argument("--updates", type=int, default=500, help="items added then removed")
    ap.add_argument(
        "--threads",
        type=lambda v: [int(t) for t in v.split(",") if t],
        default=[1, 2],
        help="faiss OpenMP threads for ANN, one row each (serving.ann_threads) [default: 1,2]",
    )
    ap.add_argument("--no-gaussian", action="store_true", help="skip the iid worst case")
    ap.add_argument("--no-methods", action="store_true", help="skip the exact-methods table")
    ap.add_argument("--crossover", default="10000,20000,30000,50000", help="sizes ('' = skip)")
    ap.add_argument(
        "--vectors",
        type=Path,
        help="npz of encoder vectors whose structure the clustered items take (a version's "
        "catalog_vectors.npz; make bench passes the bench model's) [default: the first "
        "text-vector cache on this machine]",
    )
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    rows: list[Row] = []
    sources = set()
    for data in ["clustered"] + ([] if args.no_gaussian else ["gaussian"]):
        for size in sizes:
            got, source = run_size(size, data, args, rng)
            rows += got
            sources.add(f"{data}: {source}")
            print(f"  done: {data} {size:,}", file=sys.stderr, flush=True)
    print(
        f"\nRetrieval, {EVENTS} events x K={K} queries per batch, top {TOP}, d={args.dim}, "
        f"1 BLAS thread, ANN rows tN: N faiss threads (serving.ann_threads)"
    )
    for s in sorted(sources):
        print(f"  vectors {s}")
    head = (
        f"{'items':>9} {'data':9} {'method':19} {'ms med':>7} {'ms p99':>7} {'ms min':>7} "
        f"{'recall':>7} {'build s':>8} {'add µs':>8} {'rm µs':>8} {'mem MB':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        rec = f"{r.recall:.3f}" if r.recall is not None else "-"
        print(
            f"{r.size:>9,} {r.data:9} {r.method:19} {r.ms_median:7.2f} {r.ms_p99:7.2f} "
            f"{r.ms_min:7.2f} {rec:>7} {r.build_s:8.1f} {r.add_us:8.1f} {r.remove_us:8.1f} "
            f"{r.memory_mb:8.1f}"
        )
    big = [r for r in rows if r.size >= 1_000_000 and r.data == "clustered" and r.method != "exact"]
    if big:
        print()
        for r, threads in zip(big, args.threads, strict=True):
            print(
                f"target 1M items, ANN ({threads} faiss thread(s)), batch of 64 events <= "
                f"{TARGET_MS:.0f} ms: {r.ms_median:.1f} ms median -> "
                f"{verdict(r.ms_median <= TARGET_MS)}"
            )
        print(
            f"target 1M items, recall@100 vs exact >= {TARGET_RECALL}: {big[0].recall:.3f} -> "
            f"{verdict((big[0].recall or 0) >= TARGET_RECALL)}"
        )
        print(
            f"catalogue memory at 1M items (ANN index + float vectors): {big[0].memory_mb:.0f} MB"
        )
    if not args.no_methods:
        print("\nexact top-100, 10,000 clustered items, 256 queries (ms median per batch)")
        for name, ms, speedup in exact_methods(args.dim, rng, args.vectors):
            print(f"  {name:31} {ms:7.2f} ms  x{speedup:.2f} vs today")
    cross = [int(s) for s in args.crossover.split(",") if s]
    if cross:
        print("\nexact vs ANN crossover (clustered, ms median per batch)")
        print(f"{'items':>9} {'exact':>8} {'ann':>8} {'exact/ann':>10} {'faster':>7}")
        for size, ex, an, ratio in crossover(args.dim, cross, rng, args.vectors):
            print(
                f"{size:>9,} {ex:8.2f} {an:8.2f} {ratio:10.2f} "
                f"{'exact' if ratio <= 1 else 'ann':>7}"
            )
        print(f"make_retriever switches to ANN at ANN_MIN_ITEMS = {ANN_MIN_ITEMS:,} live items")
    return 0


if __name__ == "__main__":
    sys.exit(main())
