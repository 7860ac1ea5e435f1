"""Only events whose outcome was published may have their offsets committed.

faust commits an offset once every message below it is acked. Two of its paths ack an event
the events agent never handled:

- during a rebalance, a message fetched before it (an older consumer generation, or read while
  flow control is suspended) is skipped by the stream AND acked (``Stream._py_aiter``), on the
  assumption that the partition is re-read from its committed offset afterwards. But faust
  commits while it waits for the streams to drain (``Consumer.wait_empty``), its
  "gap at the head" check lets a single missing offset through (``_new_offset``: ``> 1``) and
  after a revoke the partition has no committed offset to check against at all; so a skipped
  event's offset can be committed, the partition is re-read from after it, and that event
  never gets a recommendation. Seen as 1 lost event of 3,750 in one of four kill -9 failover
  runs;
- ``take_events`` acks the events of a batch in a ``finally``: a batch whose body is cancelled
  (a stop in the middle of publishing) is acked unpublished.

``PublishedGate`` closes both: the events agent ``mark``s a batch's messages once their
recommendations / dead letters (and the users' states) are acked by the broker, and the
consumer (``guarded_consumer``) acks an events-topic message only when it was marked. A refused
message is simply not committed (it is taken off faust's unacked set so a rebalance does not
wait for it): its partition is re-read from the committed offset and the event handled then.
The count is ``streamrec_acks_withheld_total`` on ``/metrics``.

A third path never delivers an event at all: the fetch can hand faust records from past the
offset it sought to after a rebalance (faust-streaming #216 / #221), and faust takes the
missing offsets for a gap of transaction markers and commits past them, gate or not (they
were never acked, faust fills them in: ``_add_gap``). Seen in CI as 31 events of 4,750 without
a list in a kill -9 failover run. ``FetchRepair`` in the same consumer catches that skip
before faust sees it and seeks back (``streamrec_fetch_repairs_total``); ``OffsetWatch`` in
the agent counts any skip that still reaches it (``streamrec_offset_gaps_total``).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("streamrec.worker")


class PublishedGate:
    def __init__(self, topics: Iterable[str], on_withheld: Any = None) -> None:
        self.topics = frozenset(topics)
        self._published: weakref.WeakSet[Any] = weakref.WeakSet()
        self._on_withheld = on_withheld
        self.withheld = 0

    def mark(self, messages: Iterable[Any]) -> None:
        """These messages' outcomes are published: faust may ack (and commit) them."""
        self._published.update(messages)

    def may_ack(self, message: Any) -> bool:
        if message.topic not in self.topics:
            return True
        if message in self._published:
            self._published.discard(message)
            return True
        self.withheld += 1
        if self._on_withheld is not None:
            self._on_withheld()
        log.warning(
            "%s[%s]@%s: not committed (faust acked it without it being handled, e.g. skipped "
            "in a rebalance); it is read again from the committed offset",
            message.topic,
            message.partition,
            message.offset,
        )
        return False


class FetchRepair:
    """Per events partition, the offset the fetch must deliver next; a record beyond it is a
    fetch skip (faust-streaming #216 / #221: after a rebalance the fetcher can deliver what it
    prefetched, from past the committed offset it sought to). faust would take the skipped
    offsets for a gap (transaction markers) and commit past them (``_add_gap``): those events
    would never get a recommendation. So the consumer drops that record and the rest of its
    partition's batch and seeks back to the expected offset; the events come again, in order
    (the ones already handled are de-duplicated by event id). A second skip at the same offset
    right after that seek is a real gap (transaction markers, deleted records): accepted.

    Expectations restart at every seek to the committed offsets (faust's ``perform_seek``: on
    each assignment, after recovery) and at every explicit seek; a partition without one (no
    committed offset yet) takes its first record as it comes."""

    def __init__(self, topics: Iterable[str], on_repair: Any = None) -> None:
        self.topics = frozenset(topics)
        self._expect: dict[Any, int] = {}
        self._sought: dict[Any, int] = {}
        self._on_repair = on_repair
        self.repairs = 0
        self.real_gaps = 0

    def restart(self, positions: Any) -> None:
        """The consumer sought to these positions (``{tp: offset}``; None / < 0: unknown)."""
        self._expect.clear()
        self._sought.clear()
        for tp, offset in positions.items():
            self.seek(tp, offset)

    def seek(self, tp: Any, offset: Any) -> None:
        if tp.topic in self.topics and isinstance(offset, int) and offset >= 0:
            self._expect[tp] = offset

    def forget(self, tps: Iterable[Any]) -> None:
        for tp in tps:
            self._expect.pop(tp, None)
            self._sought.pop(tp, None)

    def check(self, tp: Any, offset: int) -> int | None:
        """None: deliver this record; else the offset to seek back to (drop the record)."""
        if tp.topic not in self.topics:
            return None
        nxt = self._expect.get(tp)
        if nxt is None or offset <= nxt:  # in order, a redelivery, or nothing to check against
            self._expect[tp] = offset + 1
            self._sought.pop(tp, None)
            return None
        if self._sought.get(tp) == nxt:  # sought back there already: nothing to read there
            self.real_gaps += 1
            log.info(
                "%s[%d]: offsets %d..%d hold no records (a real gap); going on",
                tp.topic,
                tp.partition,
                nxt,
                offset - 1,
            )
            self._expect[tp] = offset + 1
            del self._sought[tp]
            return None
        self._sought[tp] = nxt
        self.repairs += 1
        if self._on_repair is not None:
            self._on_repair()
        log.warning(
            "%s[%d]: the fetch delivered offset %d where %d was next (a faust fetch skip); "
            "seeking back to %d so offsets %d..%d are handled, not committed past",
            tp.topic,
            tp.partition,
            offset,
            nxt,
            nxt,
            nxt,
            offset - 1,
        )
        return nxt


def guarded_consumer(base: type, gate: PublishedGate, repair: FetchRepair | None = None) -> type:
    """A subclass of faust's consumer class ``base`` whose ``ack`` asks ``gate`` first and
    whose fetch is checked by ``repair`` (``FetchRepair``) when one is given."""

    class GuardedConsumer(base):  # type: ignore[misc, valid-type]
        def ack(self, message: Any) -> bool:
            if gate.may_ack(message):
                return bool(super().ack(message))
            if not message.acked:
                message.acked = True  # this Message object is done; a re-read is a new one
                self._unacked_messages.discard(message)
            return False

        if repair is not None:

            async def getmany(self, timeout: float) -> Any:
                dropping: set[Any] = set()
                async for tp, message in super().getmany(timeout):
                    if tp in dropping:
                        continue
                    back = repair.check(tp, message.offset)
                    if back is not None:
                        dropping.add(tp)  # the rest of this batch comes again after the seek
                        await self.seek(tp, back)
                        continue
                    yield tp, message

            async def seek_to_committed(self) -> Any:
                positions = await super().seek_to_committed()
                repair.restart(positions)
                return positions

            async def seek(self, partition: Any, offset: int) -> None:
                await super().seek(partition, offset)
                repair.seek(partition, offset)

            async def on_partitions_revoked(self, revoked: Any) -> None:
                repair.forget(revoked)
                await super().on_partitions_revoked(revoked)

    return GuardedConsumer  # (keep its __qualname__: mode keys a service's tasks by it)


def install(app: Any, gate: PublishedGate, repair: FetchRepair | None = None) -> None:
    """Make ``app``'s consumer (created lazily by its transport) a guarded one."""
    transport = app.transport
    transport.Consumer = guarded_consumer(type(transport).Consumer, gate, repair)


class OffsetWatch:
    """Per events partition, the next offset the agent expects: an event beyond it means
    faust's fetch path skipped events (faust-streaming #216: after a rebalance the fetcher can
    deliver from where it had prefetched, not from the committed offset it seeks to). The
    consumer's ``FetchRepair`` seeks back over such skips before faust sees them; one that
    reaches the agent all the same (a stream-level skip) is a WARNING and
    ``streamrec_offset_gaps_total``: those events are handled only when their partition is
    re-read, and faust's own gap filling (meant for transaction markers) may commit past them.

    The expectation starts, per partition and per assignment, at the offset faust committed
    (``committed(partition)``, read at the partition's first event after an assignment, when
    faust has sought there); a re-read below it is a redelivery, not a gap. Offsets missing
    for real (transaction markers of a transactional producer) count too: the figure is
    exact for non-transactional producers."""

    def __init__(self, on_gap: Any = None) -> None:
        self._next: dict[int, int] = {}
        self._on_gap = on_gap
        self.gaps = 0
        self.skipped = 0  # offsets never delivered, over all gaps

    def reset(self) -> None:
        """A new assignment: expectations restart from the committed offsets."""
        self._next.clear()

    def observe(self, where: Iterable[tuple[int, int]], committed: Any) -> None:
        """The batch's (partition, offset) in arrival order."""
        expect = self._next
        for partition, offset in where:
            nxt = expect.get(partition)
            if nxt is None:
                nxt = committed(partition)
            if nxt is not None and offset > nxt:
                self.gaps += 1
                self.skipped += offset - nxt
                if self._on_gap is not None:
                    self._on_gap()
                log.warning(
                    "events partition %d: offsets %d..%d were never delivered to the agent "
                    "(faust fetch path); they are handled only when the partition is read again",
                    partition,
                    nxt,
                    offset - 1,
                )
            if nxt is None or offset + 1 > nxt:
                expect[partition] = offset + 1
