"""MovieLens and RecBole converters on small hand-written fixtures, and on ml-latest-small."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from schemas.events import ClickEvent, PurchaseEvent
from schemas.items import CatalogueItem
from stream_app.datagen import iter_jsonl, load_events, load_items
from stream_app.datagen.convert import ML100K_GENRES, convert_movielens, convert_recbole

ML_LATEST_SMALL = Path(__file__).resolve().parents[3] / "shared" / "data" / "ml-latest-small"


def _write(path: Path, lines: list[str], encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))


def _load(out: Path) -> tuple[dict[str, CatalogueItem], list[ClickEvent | PurchaseEvent]]:
    items = {it.item_id: it for it in load_items(out / "items.jsonl")}
    return items, load_events(out / "events.jsonl")


def _check_common(
    events: list[ClickEvent | PurchaseEvent], threshold_ok: set[tuple[str, str]]
) -> None:
    """Time order, unique ids, each purchase right after its click with the same ts."""
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    assert len({e.event_id for e in events}) == len(events)
    clicks = {(e.user_id, e.item_id): e for e in events if isinstance(e, ClickEvent)}
    buys = [e for e in events if isinstance(e, PurchaseEvent)]
    assert {(e.user_id, e.item_id) for e in buys} == threshold_ok
    for buy in buys:
        click = clicks[(buy.user_id, buy.item_id)]
        assert buy.ts == click.ts
        assert events.index(buy) == events.index(click) + 1  # adjacent: LOO merges them


def _flags(*names: str) -> str:
    return "|".join("1" if g in names else "0" for g in ML100K_GENRES)


@pytest.fixture
def ml100k(tmp_path: Path) -> Path:
    src = tmp_path / "ml-100k"
    _write(
        src / "u.data",
        [
            "196\t242\t3\t881250949",
            "186\t302\t5\t891717742",
            "22\t377\t1\t878887116",
            "196\t302\t4\t881250950",
            "244\t51\t2",
            "166\t346\tx\t886397596",
            "298\t474\t4\t",
            "253\t999\t5\t891628467",
        ],
    )
    url = "http://us.imdb.com/M/title-exact?Kolya%20(1996)"
    _write(
        src / "u.item",
        [
            f"242|Kolya (1996)|24-Jan-1997||{url}|{_flags('Comedy')}",
            f"302|L.A. Confidential (1997)|||x|{_flags('Crime', 'Film-Noir', 'Thriller')}",
            f"377|Café Society (1995)|01-Jan-1995||x|{_flags('unknown')}",
            "404|Too Few Columns|01-Jan-1995",
        ],
        encoding="latin-1",
    )
    _write(src / "u.genre", [f"{g}|{i}" for i, g in enumerate(ML100K_GENRES)] + [""])
    return src


def test_ml100k(ml100k: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = convert_movielens(ml100k, out)
    items, events = _load(out)
    assert summary["format"] == "ml-100k"
    assert (summary["clicks"], summary["purchases"], summary["events"]) == (5, 3, 8)
    assert summary["users"] == 4 and summary["items"] == len(items) == 4
    assert summary["lines_read"] == {"u.genre": 19, "u.item": 4, "u.data": 8}
    assert summary["skipped"]["count"] == 4
    examples = summary["skipped"]["examples"]
    assert [e.split(":")[:2] for e in examples] == [
        ["u.item", "4"],
        ["u.data", "5"],
        ["u.data", "6"],
        ["u.data", "7"],
    ]
    assert "expected 4 columns, got 3" in examples[1] and "rating" in examples[2]
    assert "timestamp" in examples[3]
    assert summary["warnings"]["missing_items"] == 1
    assert items["999"].title == "item 999"
    assert items["302"].categories == ["Crime", "Film-Noir", "Thriller"]
    assert items["377"].title == "Café Society (1995)" and items["377"].categories == []
    assert items["242"].description == "Released 24-Jan-1997."
    assert items["302"].description is None
    _check_common(events, {("186", "302"), ("196", "302"), ("253", "999")})
    first = events[0]
    assert (first.event_id, first.user_id, first.item_id) == ("ml-22-377-c", "22", "377")
    assert first.ts.timestamp() == 878887116
    assert Path(summary["paths"]["events"]) == out / "events.jsonl"


def test_ml1m_with_a_lower_threshold(tmp_path: Path) -> None:
    src = tmp_path / "ml-1m"
    _write(
        src / "movies.dat",
        ["1::Toy Story (1995)::Animation|Children's|Comedy", "1193::Cuckoo's Nest (1975)::Drama"],
        encoding="latin-1",
    )
    _write(
        src / "ratings.dat",
        ["1::1193::5::978300760", "1::1::3::978300760", "2::1193::2::978300000", "2::1193::5"],
    )
    out = tmp_path / "out"
    summary = convert_movielens(src, out, rating_threshold=3.0)
    items, events = _load(out)
    assert summary["format"] == "ml-1m"
    assert (summary["clicks"], summary["purchases"]) == (3, 2)
    assert summary["skipped"]["examples"] == ["ratings.dat:4: expected 4 columns, got 3"]
    assert items["1"].categories == ["Animation", "Children's", "Comedy"]
    _check_common(events, {("1", "1193"), ("1", "1")})
    # ties on ts keep file order (1193 on line 1 before 1 on line 2); each purchase follows
    # its own click directly, with the same ts
    assert [e.event_id for e in events] == [
        "ml-2-1193-c",
        "ml-1-1193-c",
        "ml-1-1193-p",
        "ml-1-1-c",
        "ml-1-1-p",
    ]


@pytest.fixture
def ml_latest(tmp_path: Path) -> Path:
    src = tmp_path / "download" / "ml-latest-small"
    _write(
        src / "movies.csv",
        [
            "movieId,title,genres",
            "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy",
            '11,"American President, The (1995)",Comedy|Drama|Romance',
            "99,Mystery Film (2001),(no genres listed)",
        ],
    )
    _write(
        src / "ratings.csv",
        [
            "userId,movieId,rating,timestamp",
            "1,1,4.0,964982703",
            "1,11,3.5,964982224",
            "2,11,4.5,1445714994",
            "2,1,abc,1445714995",
            "3,99",
            "3,99,0.5,1445714000",
        ],
    )
    _write(
        src / "tags.csv",
        [
            "userId,movieId,tag,timestamp",
            "2,11,politics,1445714994",
            "5,11,Politics,1",
            "2,1,pixar,2",
        ],
    )
    return src.parent


def test_ml_latest_csv(ml_latest: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = convert_movielens(ml_latest, out)
    items, events = _load(out)
    assert summary["format"] == "ml-latest"
    assert (summary["clicks"], summary["purchases"], summary["users"]) == (4, 2, 3)
    assert summary["lines_read"]["ratings.csv"] == 6
    assert summary["skipped"]["examples"] == [
        "ratings.csv:5: rating: expected a number, got 'abc'",
        "ratings.csv:6: expected 4 columns, got 2",
    ]
    assert summary["warnings"] == {}
    assert items["11"].title == "American President, The (1995)"
    assert items["11"].categories == ["Comedy", "Drama", "Romance"]
    assert items["11"].description == "Tags: politics."
    assert items["1"].description == "Tags: pixar."
    assert items["99"].categories == []
    _check_common(events, {("1", "1"), ("2", "11")})
    assert [e.item_id for e in events if e.user_id == "1"] == ["11", "1", "1"]


def test_recbole_with_item_file(tmp_path: Path) -> None:
    src = tmp_path / "toy"
    _write(
        src / "toy.inter",
        [
            "user_id:token\titem_id:token\trating:float\ttimestamp:float",
            "u1\ta\t5\t100.5",
            "u1\tb\t2\t50",
            "u2\ta\t4",
            "u2\tc\t4\t70",
            "u3\tb\tbad\t80",
        ],
    )
    _write(
        src / "toy.item",
        [
            "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq",
            "a\tThe First Film\t1999\tAction Adventure",
            "b\tSecond, Part Two\t2001\tDrama,Film-Noir",
            "broken line",
        ],
    )
    out = tmp_path / "out"
    summary = convert_recbole(src, out)
    items, events = _load(out)
    assert summary["format"] == "recbole"
    assert (summary["clicks"], summary["purchases"]) == (3, 2)
    assert summary["warnings"]["unknown_columns"] == ["toy.item:release_year"]
    assert summary["warnings"]["missing_items"] == 1
    assert summary["skipped"]["count"] == 3
    assert [e.split(":")[:2] for e in summary["skipped"]["examples"]] == [
        ["toy.item", "4"],
        ["toy.inter", "4"],
        ["toy.inter", "6"],
    ]
    assert items["a"].title == "The First Film" and items["a"].categories == ["Action", "Adventure"]
    assert items["b"].categories == ["Drama", "Film-Noir"] and items["c"].title == "item c"
    _check_common(events, {("u1", "a"), ("u2", "c")})
    assert [e.item_id for e in events] == ["b", "c", "c", "a", "a"]
    assert events[-2].ts.timestamp() == pytest.approx(100.5)


def test_recbole_without_rating_or_timestamp(tmp_path: Path) -> None:
    inter = tmp_path / "bare" / "bare.inter"
    _write(inter, ["user_id:token\titem_id:token", "u1\tx", "u2\ty", "u1\ty"])
    summary = convert_recbole(inter.parent, tmp_path / "out")
    items, events = _load(tmp_path / "out")
    assert (summary["clicks"], summary["purchases"]) == (3, 0)
    assert all(isinstance(e, ClickEvent) for e in events)
    assert [(e.user_id, e.item_id) for e in events] == [("u1", "x"), ("u2", "y"), ("u1", "y")]
    assert [e.ts.timestamp() * 1000 for e in events] == pytest.approx([2, 3, 4])
    assert set(items) == {"x", "y"} and summary["warnings"]["missing_items"] == 2
    assert "no_timestamp" in summary["warnings"]


def test_errors_name_the_path_and_what_was_expected(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere.*expected a MovieLens"):
        convert_movielens(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"u\.data.*ratings\.dat.*ratings\.csv"):
        convert_movielens(tmp_path / "empty", tmp_path / "out")
    with pytest.raises(FileNotFoundError, match=r"empty.*\.inter"):
        convert_recbole(tmp_path / "empty", tmp_path / "out")
    _write(tmp_path / "untyped" / "untyped.inter", ["user_id\titem_id", "1\t2"])
    with pytest.raises(ValueError, match=r"untyped\.inter:1: expected name:type"):
        convert_recbole(tmp_path / "untyped", tmp_path / "out")
    _write(tmp_path / "nouser" / "nouser.inter", ["uid:token\titem_id:token", "1\t2"])
    with pytest.raises(ValueError, match=r"nouser\.inter:1: expected a user_id:token column"):
        convert_recbole(tmp_path / "nouser", tmp_path / "out")


def test_jsonl_reader_reports_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = '{"event_id":"e1","user_id":"u","item_id":"i","ts":0,"event_type":"click"}'
    path.write_text(f"{good}\n\n[1, 2]\n{{oops\n" + good.replace("click", "view") + "\n")
    errors: list[tuple[int, str]] = []
    rows = list(iter_jsonl(path, on_error=lambda n, why: errors.append((n, why))))
    assert [n for n, _ in rows] == [1, 5]
    assert [n for n, _ in errors] == [3, 4] and "invalid JSON" in errors[1][1]
    with pytest.raises(ValueError, match=r"events\.jsonl:3: expected a JSON object, got list"):
        load_events(path)
    path.write_text(f"{good}\n" + good.replace("click", "view") + "\n")
    with pytest.raises(ValueError, match=r"events\.jsonl:2: .*event_type"):
        load_events(path)


def test_cli_convert_json_and_errors(ml_latest: Path, tmp_path: Path) -> None:
    import stream_app.cli.data  # noqa: F401  (registers the commands)
    from stream_app.cli.common import cli

    out = tmp_path / "out"
    args = ["convert", "movielens", str(ml_latest), "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--rating-threshold", "3.5", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["purchases"] == 3 and summary["rating_threshold"] == 3.5
    missing = tmp_path / "missing"
    bad = CliRunner().invoke(cli, ["convert", "recbole", str(missing), "--out", str(out)])
    assert bad.exit_code == 1 and str(missing) in bad.output and ".inter" in bad.output


@pytest.mark.mldata
@pytest.mark.skipif(not ML_LATEST_SMALL.is_dir(), reason=f"{ML_LATEST_SMALL} absent")
def test_ml_latest_small(tmp_path: Path) -> None:
    summary = convert_movielens(ML_LATEST_SMALL, tmp_path)
    assert summary["clicks"] == 100_836 and summary["users"] == 610
    assert summary["items"] == 9742 and summary["skipped"]["count"] == 0
    events = load_events(tmp_path / "events.jsonl")
    assert len(events) == summary["events"] == summary["clicks"] + summary["purchases"]
    assert [e.ts for e in events] == sorted(e.ts for e in events)
    kinds = Counter(type(e).__name__ for e in events)
    assert kinds["PurchaseEvent"] == summary["purchases"] > 0
