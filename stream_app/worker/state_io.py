"""The state table's reads and writes for a take, straight on faust's RocksDB partition DBs,
with the changelog records returned for the caller to publish through ``BatchPublisher`` (the
events agent does it once the take's recommendations are acked: ``agents.py``).

Why: ``table[key] = value`` costs ~100-150 us per write in faust (key/value codecs, a
current-event lookup, ``send_soon`` through the producer buffer, a callback per record that
puts the changelog offset into RocksDB); this does per take one ``WriteBatch`` per partition,
one changelog ``Record`` per user and one persisted-offset put per partition.

What stays the same: the changelog records are those faust writes (raw key and value, the
partition of the user's input event, the table's changelog topic), so faust recovers the
table from them as from its own (``bench/io_study.py`` checks it with a replacement worker);
the persisted offset is set only once the changelog records are acked, as faust does; faust's
table sensors count each read and write (``keys_retrieved`` / ``keys_updated`` on
``/metrics``) as for ``table.get`` / ``table[key] = value``. Like ``table[key] = value``, the
RocksDB write happens before the take is acked: a redelivered take meets state that already
holds it (the state's event-id de-duplication). faust keeps no value cache in front of the
DBs (its ``_key_index`` maps a key to its partition only), so ``table.get`` (the web's
``/state``) reads what ``write`` wrote.

Depends on faust-streaming's rocksdict store internals (``Store._db_for_partition``, raw-mode
DBs); ``StateIO`` refuses any other store.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from stream_app.worker.publish import Record, last_offsets


class StateIO:
    def __init__(self, table: Any) -> None:
        store = table.data
        if not getattr(store, "use_rocksdict", False) or not hasattr(store, "_db_for_partition"):
            msg = (
                f"table {table.name}: StateIO needs faust's rocksdict store "
                f"(store='rocksdb://' with rocksdict installed), got {type(store).__name__}"
            )
            raise TypeError(msg)
        self.table, self.store = table, store
        self._sensors = table.app.sensors
        self.changelog: str = table.changelog_topic.get_topic_name()

    def read(self, key: bytes, partition: int) -> bytes | None:
        """The user's state in the table partition of their events."""
        value = self.store._db_for_partition(partition).get(key)
        self._sensors.on_table_get(self.table, key)
        return bytes(value) if value is not None else None

    def write(self, writes: Iterable[tuple[bytes, bytes, int]]) -> list[Record]:
        """Write (key, value, partition) to RocksDB, one batch per partition; return the
        changelog records to publish with the take (the last write of a key wins)."""
        from rocksdict import WriteBatch

        batches: dict[int, Any] = {}
        records: dict[bytes, Record] = {}
        for key, value, partition in writes:
            wb = batches.get(partition)
            if wb is None:
                wb = batches[partition] = WriteBatch(raw_mode=True)  # faust's DBs are raw
            wb.put(key, value)
            records[key] = Record(self.changelog, key, value, partition=partition)
            self._sensors.on_table_set(self.table, key, value)
        for partition, wb in batches.items():
            self.store._db_for_partition(partition).write(wb)
        return list(records.values())

    def persisted(self, records: Sequence[Record]) -> None:
        """After the publish: remember the acked changelog offsets, so that a restart on the
        same data dir recovers only what came after them."""
        from faust.types import TP

        for (topic, partition), offset in last_offsets(records).items():
            if topic == self.changelog:
                self.store.set_persisted_offset(TP(topic, partition), offset)
