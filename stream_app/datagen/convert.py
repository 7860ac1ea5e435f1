"""Public datasets -> our ``items.jsonl`` + ``events.jsonl``: MovieLens (100k, 1m, latest) and
RecBole atomic files. Every rating is a click; a rating >= the threshold is also a purchase
with the same timestamp, written right after its click (the time sort is stable), so the
leave-one-out protocol merges the pair into one interaction even when the user rated other
items within the same second. Broken lines are skipped and reported with file name and line number.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from schemas.events import MAX_EPOCH_MS, ClickEvent, PurchaseEvent
from schemas.items import CatalogueItem
from stream_app.datagen.jsonl import write_jsonl

Progress = Callable[[str, int, int | None], None]
Row = tuple[int, list[str]]

MAX_EXAMPLES = 20
ML100K_GENRES = (
    "unknown|Action|Adventure|Animation|Children's|Comedy|Crime|Documentary|Drama|Fantasy|"
    "Film-Noir|Horror|Musical|Mystery|Romance|Sci-Fi|Thriller|War|Western"
).split("|")
NO_GENRE = {"(no genres listed)", "unknown", ""}
TITLE_COLUMNS = ("title", "movie_title", "name", "item_name")
CATEGORY_COLUMNS = ("genre", "genres", "categories", "category", "class")
DESCRIPTION_COLUMNS = ("description", "desc")


class _Log:
    """Collects events and items while reading; writes sorted JSONL and builds the summary."""

    def __init__(self, fmt: str, prefix: str, threshold: float, progress: Progress | None) -> None:
        self.fmt, self.prefix, self.threshold, self.progress = fmt, prefix, threshold, progress
        self.ts: list[int] = []
        self.users: list[str] = []
        self.items: list[str] = []
        self.buy: list[bool] = []
        self.ids: list[str] = []
        self.seen_ids: set[str] = set()
        self.catalogue: dict[str, dict[str, Any]] = {}
        self.lines: dict[str, int] = {}
        self.skipped = 0
        self.examples: list[str] = []
        self.warnings: dict[str, Any] = {}

    def skip(self, file: Path, line_no: int, reason: str) -> None:
        self.skipped += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{file.name}:{line_no}: {reason}")

    def warn(self, key: str, value: Any) -> None:
        if isinstance(value, int):
            self.warnings[key] = self.warnings.get(key, 0) + value
        else:
            self.warnings.setdefault(key, []).append(value)

    def item(self, file: Path, line_no: int, item_id: str, **fields: Any) -> None:
        if not item_id or len(item_id) > 256:
            self.skip(file, line_no, f"item_id: expected 1..256 characters, got {item_id!r}")
        elif item_id in self.catalogue:
            self.skip(file, line_no, f"item_id: expected unique ids, got {item_id!r} again")
        else:
            self.catalogue[item_id] = fields

    def rating(self, file: Path, line_no: int, fields: list[str], ts_scale: float | None) -> None:
        """``fields`` = user, item, rating ('' = none), timestamp ('' = use line_no as ms)."""
        user, item, rating_text, ts_text = (f.strip() for f in fields)
        for name, value in (("user_id", user), ("item_id", item)):
            if not value or len(value) > 256:
                self.skip(file, line_no, f"{name}: expected 1..256 characters, got {value!r}")
                return
        rating = None
        if rating_text:
            rating = _number(rating_text)
            if rating is None:
                self.skip(file, line_no, f"rating: expected a number, got {rating_text!r}")
                return
        if ts_scale is None:
            ts_ms = line_no
        else:
            seconds = _number(ts_text)
            ts_ms = -1 if seconds is None else round(seconds * ts_scale)
            if not 0 <= ts_ms < MAX_EPOCH_MS:
                msg = f"timestamp: expected epoch seconds >= 0, got {ts_text!r}"
                self.skip(file, line_no, msg)
                return
        kinds = [False] if rating is None or rating < self.threshold else [False, True]
        for buy in kinds:
            suffix = "p" if buy else "c"
            event_id = f"{self.prefix}-{user}-{item}-{suffix}"
            if event_id in self.seen_ids:
                event_id = f"{self.prefix}-{user}-{item}-{line_no}-{suffix}"
            self.seen_ids.add(event_id)
            self.ts.append(ts_ms)
            self.users.append(user)
            self.items.append(item)
            self.buy.append(buy)
            self.ids.append(event_id)

    def write(self, out_dir: str | Path, src: Path, started: float) -> dict[str, Any]:
        out = Path(out_dir)
        missing = [i for i in dict.fromkeys(self.items) if i not in self.catalogue]
        for item_id in missing:
            self.catalogue[item_id] = {"title": f"item {item_id}"}
        if missing:
            self.warn("missing_items", len(missing))
            self.warnings["missing_item_examples"] = missing[:MAX_EXAMPLES]
        paths = {"items": out / "items.jsonl", "events": out / "events.jsonl"}
        n_items = write_jsonl(paths["items"], self._catalogue_models())
        order = np.argsort(np.asarray(self.ts, dtype=np.int64), kind="stable").tolist()
        n_events = write_jsonl(paths["events"], self._event_models(order))
        purchases = sum(self.buy)
        return {
            "format": self.fmt,
            "source": str(src),
            "rating_threshold": self.threshold,
            "lines_read": self.lines,
            "events": n_events,
            "clicks": n_events - purchases,
            "purchases": purchases,
            "users": len(set(self.users)),
            "items": n_items,
            "rated_items": len(set(self.items)),
            "skipped": {"count": self.skipped, "examples": self.examples},
            "warnings": self.warnings,
            "seconds": round(time.perf_counter() - started, 3),
            "paths": {k: str(v) for k, v in paths.items()},
        }

    def _catalogue_models(self) -> Iterator[CatalogueItem]:
        for item_id, fields in self.catalogue.items():
            title = (fields.get("title") or "").strip()[:2000] or f"item {item_id}"
            cats = [c.strip()[:200] for c in fields.get("categories", []) if c.strip()]
            desc = (fields.get("description") or "")[:20000] or None
            yield CatalogueItem(
                item_id=item_id,
                title=title,
                categories=list(dict.fromkeys(cats))[:100],
                description=desc,
                price=fields.get("price"),
            )

    def _event_models(self, order: list[int]) -> Iterator[ClickEvent | PurchaseEvent]:
        total = len(order)
        for n, k in enumerate(order, start=1):
            common: dict[str, Any] = {
                "event_id": self.ids[k],
                "user_id": self.users[k],
                "item_id": self.items[k],
                "ts": self.ts[k],
            }
            if self.buy[k]:
                yield PurchaseEvent(event_type="purchase", **common)
            else:
                yield ClickEvent(event_type="click", **common)
            if self.progress is not None and (n % 50_000 == 0 or n == total):
                self.progress("writing events", n, total)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _rows(
    path: Path, log: _Log, sep: str, n_cols: int | None, encoding: str, header: bool
) -> Iterator[Row]:
    """(line_no, fields) of a delimited file; wrong column counts are reported and skipped.

    ``sep=","`` uses the csv module (quoted fields with commas); blank lines are ignored.
    """
    log.lines[path.name] = 0
    with path.open("r", encoding=encoding, errors="replace", newline="") as fh:
        if sep == ",":
            reader = csv.reader(fh)
            rows: Iterator[Row] = ((reader.line_num, fields) for fields in reader)
        else:
            rows = ((i, ln.rstrip("\r\n").split(sep)) for i, ln in enumerate(fh, start=1))
        for line_no, fields in rows:
            if header and line_no == 1:
                continue
            if not fields or fields == [""]:
                continue
            log.lines[path.name] += 1
            if n_cols is not None and len(fields) != n_cols:
                log.skip(path, line_no, f"expected {n_cols} columns, got {len(fields)}")
                continue
            yield line_no, fields
            if log.progress is not None and log.lines[path.name] % 100_000 == 0:
                log.progress(f"reading {path.name}", log.lines[path.name], None)


def _genres(text: str, sep: str = "|") -> list[str]:
    return [g.strip() for g in text.split(sep) if g.strip() not in NO_GENRE]


def _find_movielens(src: Path) -> tuple[str, Path]:
    if not src.is_dir():
        msg = f"{src}: expected a MovieLens directory (ml-100k, ml-1m or ml-latest), not found"
        raise FileNotFoundError(msg)
    markers = (("u.data", "ml-100k"), ("ratings.dat", "ml-1m"), ("ratings.csv", "ml-latest"))
    for folder in [src, *sorted(p for p in src.iterdir() if p.is_dir())]:
        for marker, fmt in markers:
            if (folder / marker).is_file():
                return fmt, folder
    found = ", ".join(sorted(p.name for p in src.iterdir())[:10]) or "nothing"
    msg = (
        f"{src}: expected MovieLens files u.data (ml-100k), ratings.dat (ml-1m) or ratings.csv "
        f"(ml-latest), found: {found}"
    )
    raise FileNotFoundError(msg)


def convert_movielens(
    src: str | Path,
    out_dir: str | Path,
    rating_threshold: float = 4.0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Convert a MovieLens directory (format detected from its files) into ``out_dir``."""
    started = time.perf_counter()
    fmt, folder = _find_movielens(Path(src))
    log = _Log(fmt, "ml", rating_threshold, progress)
    if fmt == "ml-100k":
        genres = ML100K_GENRES
        if (folder / "u.genre").is_file():
            pairs = _rows(folder / "u.genre", log, "|", 2, "latin-1", header=False)
            genres = [name for _, (name, _index) in pairs]
        movies = folder / "u.item"
        if movies.is_file():
            n_cols = 5 + len(genres)
            for line_no, f in _rows(movies, log, "|", n_cols, "latin-1", header=False):
                flags = zip(genres, f[5:], strict=True)
                cats = [g for g, on in flags if on.strip() == "1" and g not in NO_GENRE]
                date = f[2].strip()
                desc = f"Released {date}." if date else None
                log.item(
                    movies, line_no, f[0].strip(), title=f[1], categories=cats, description=desc
                )
        ratings, sep, enc, header = folder / "u.data", "\t", "latin-1", False
    elif fmt == "ml-1m":
        movies = folder / "movies.dat"
        if movies.is_file():
            for line_no, f in _rows(movies, log, "::", 3, "latin-1", header=False):
                log.item(movies, line_no, f[0].strip(), title=f[1], categories=_genres(f[2]))
        ratings, sep, enc, header = folder / "ratings.dat", "::", "latin-1", False
    else:
        tags = _movie_tags(folder / "tags.csv", log)
        movies = folder / "movies.csv"
        if movies.is_file():
            for line_no, f in _rows(movies, log, ",", 3, "utf-8", header=True):
                movie = f[0].strip()
                desc = "Tags: " + ", ".join(tags[movie]) + "." if movie in tags else None
                cats = _genres(f[2])
                log.item(movies, line_no, movie, title=f[1], categories=cats, description=desc)
        ratings, sep, enc, header = folder / "ratings.csv", ",", "utf-8", True
    if not movies.is_file():
        log.warn("missing_files", movies.name)
    for line_no, f in _rows(ratings, log, sep, 4, enc, header=header):
        log.rating(ratings, line_no, f, ts_scale=1000.0)
    return log.write(out_dir, folder, started)


def _movie_tags(path: Path, log: _Log) -> dict[str, list[str]]:
    tags: dict[str, dict[str, str]] = {}
    if not path.is_file():
        return {}
    for _, f in _rows(path, log, ",", 4, "utf-8", header=True):
        tag = f[2].strip()
        if tag:
            tags.setdefault(f[1].strip(), {}).setdefault(tag.lower(), tag)
    return {movie: list(seen.values())[:50] for movie, seen in tags.items()}


def _find_recbole(src: Path) -> Path:
    if src.is_file() and src.suffix == ".inter":
        return src
    if not src.is_dir():
        msg = f"{src}: expected a RecBole dataset directory with a <name>.inter file, not found"
        raise FileNotFoundError(msg)
    inters = sorted(src.glob("*.inter"))
    named = [p for p in inters if p.stem == src.name]
    if len(inters) == 1 or len(named) == 1:
        return named[0] if named else inters[0]
    if not inters:
        found = ", ".join(sorted(p.name for p in src.iterdir())[:10]) or "nothing"
        msg = f"{src}: expected a <name>.inter file (RecBole atomic files), found: {found}"
        raise FileNotFoundError(msg)
    names = ", ".join(p.name for p in inters)
    msg = f"{src}: expected one .inter file, found several ({names}); pass the file itself"
    raise ValueError(msg)


def _header(path: Path, line: str) -> list[str]:
    names = []
    for col in line.rstrip("\r\n").split("\t"):
        name, colon, _kind = col.partition(":")
        if not colon or not name.strip():
            msg = f"{path}:1: expected name:type header columns (e.g. user_id:token), got {col!r}"
            raise ValueError(msg)
        names.append(name.strip())
    return names


def _read_header(path: Path) -> list[str]:
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        return _header(path, fh.readline())


def _split_seq(text: str) -> list[str]:
    parts = text.split(",") if "," in text else text.split()
    return [p.strip() for p in parts if p.strip()]


def convert_recbole(
    src: str | Path,
    out_dir: str | Path,
    rating_threshold: float = 4.0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Convert RecBole atomic files (``<name>.inter`` and optional ``<name>.item``)."""
    started = time.perf_counter()
    inter = _find_recbole(Path(src))
    log = _Log("recbole", "rb", rating_threshold, progress)
    item_file = inter.with_suffix(".item")
    if item_file.is_file():
        cols = _read_header(item_file)
        if "item_id" not in cols:
            msg = f"{item_file}:1: expected an item_id:token column, got columns {cols}"
            raise ValueError(msg)
        roles = {"item_id": cols.index("item_id")}
        for role, aliases in (
            ("title", TITLE_COLUMNS),
            ("categories", CATEGORY_COLUMNS),
            ("description", DESCRIPTION_COLUMNS),
            ("price", ("price",)),
        ):
            hit = [i for i, c in enumerate(cols) if c in aliases]
            if hit:
                roles[role] = hit[0]
        for i, c in enumerate(cols):
            if i not in roles.values():
                log.warn("unknown_columns", f"{item_file.name}:{c}")
        for line_no, f in _rows(item_file, log, "\t", len(cols), "utf-8", header=True):
            fields: dict[str, Any] = {}
            if "title" in roles:
                fields["title"] = f[roles["title"]]
            if "categories" in roles:
                fields["categories"] = _split_seq(f[roles["categories"]])
            if "description" in roles:
                fields["description"] = f[roles["description"]].strip()
            if "price" in roles:
                price = _number(f[roles["price"]])
                fields["price"] = price if price is not None and price >= 0 else None
            log.item(item_file, line_no, f[roles["item_id"]].strip(), **fields)
    cols = _read_header(inter)
    for needed in ("user_id", "item_id"):
        if needed not in cols:
            msg = f"{inter}:1: expected a {needed}:token column, got columns {cols}"
            raise ValueError(msg)
    pick = [cols.index(c) if c in cols else None for c in ("user_id", "item_id", "rating")]
    ts_col = cols.index("timestamp") if "timestamp" in cols else None
    for c in cols:
        if c not in ("user_id", "item_id", "rating", "timestamp"):
            log.warn("unknown_columns", f"{inter.name}:{c}")
    if ts_col is None:
        log.warn("no_timestamp", f"{inter.name}: no timestamp column, row order used as ms")
    for line_no, f in _rows(inter, log, "\t", len(cols), "utf-8", header=True):
        values = [f[i] if i is not None else "" for i in pick]
        values.append(f[ts_col] if ts_col is not None else "")
        log.rating(inter, line_no, values, ts_scale=None if ts_col is None else 1000.0)
    return log.write(out_dir, inter, started)
