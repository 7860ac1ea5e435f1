"""StateIO on a real faust table with its real RocksDB (rocksdict) store, no broker: what it
writes faust reads and the other way round, changelog records per user, persisted offsets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust
import pytest
from faust.types import TP

from stream_app.worker.publish import Record
from stream_app.worker.state_io import StateIO


@pytest.fixture
def table(tmp_path: Path) -> Any:
    app = faust.App("state-io-test", store="rocksdb://", datadir=str(tmp_path), autodiscover=False)
    return app.Table("user-state", partitions=4, key_type=bytes, value_type=bytes)


def test_writes_are_read_back_by_faust_and_by_state_io(table: Any):
    io = StateIO(table)
    records = io.write([(b"u1", b"a", 0), (b"u2", b"b", 3), (b"u1", b"a2", 0)])
    assert io.read(b"u1", 0) == b"a2"
    assert io.read(b"u2", 3) == b"b"
    assert io.read(b"u2", 0) is None  # each user lives in their own partition's DB
    assert table.get(b"u1") == b"a2"  # faust's own lookup (as the web route does it)
    assert table.get(b"u2") == b"b"
    changelog = table.changelog_topic.get_topic_name()
    assert [(r.topic, r.key, r.value, r.partition) for r in records] == [
        (changelog, b"u1", b"a2", 0),
        (changelog, b"u2", b"b", 3),
    ]


def test_state_written_by_faust_is_read_by_state_io(table: Any):
    import weakref

    from faust.streams import _current_event

    class Msg:
        partition, topic = 2, "events"

    class Ev:
        message = Msg()

    ev = Ev()
    token = _current_event.set(weakref.ref(ev))  # type: ignore[arg-type]  # faust: the event's
    try:
        table.data[b"u7"] = b"from faust"
    finally:
        _current_event.reset(token)
    assert StateIO(table).read(b"u7", 2) == b"from faust"


def test_persisted_offsets_are_the_highest_acked_changelog_offsets(table: Any):
    io = StateIO(table)
    recs = io.write([(b"u1", b"a", 1), (b"u2", b"b", 1), (b"u3", b"c", 2)])
    for off, r in zip((10, 11, 4), recs, strict=True):
        r.offset = off
    other = Record("recommendations", b"u1", b"r", partition=1, offset=99)
    io.persisted([*recs, other])
    assert table.data.persisted_offset(TP(io.changelog, 1)) == 11
    assert table.data.persisted_offset(TP(io.changelog, 2)) == 4
    assert table.data.persisted_offset(TP(io.changelog, 0)) is None


def test_a_table_without_the_rocksdict_store_is_refused(tmp_path: Path):
    app = faust.App("state-io-mem", store="memory://", autodiscover=False)
    t = app.Table("user-state", partitions=1, key_type=bytes, value_type=bytes)
    with pytest.raises(TypeError, match="user-state: StateIO needs faust's rocksdict store"):
        StateIO(t)
