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


def guarded_consumer(base: type, gate: PublishedGate) -> type:
    """A subclass of faust's consumer class ``base`` whose ``ack`` asks ``gate`` first."""

    class GuardedConsumer(base):  # type: ignore[misc, valid-type]
        def ack(self, message: Any) -> bool:
            if gate.may_ack(message):
                return bool(super().ack(message))
            if not message.acked:
                message.acked = True  # this Message object is done; a re-read is a new one
                self._unacked_messages.discard(message)
            return False

    return GuardedConsumer  # (keep its __qualname__: mode keys a service's tasks by it)


def install(app: Any, gate: PublishedGate) -> None:
    """Make ``app``'s consumer (created lazily by its transport) a guarded one."""
    transport = app.transport
    transport.Consumer = guarded_consumer(type(transport).Consumer, gate)


class OffsetWatch:
    """Per events partition, the next offset the agent expects: an event beyond it means
    faust's fetch path skipped events (faust-streaming #216: after a rebalance the fetcher can
    deliver from where it had prefetched, not from the committed offset it seeks to). Those
    events are not handled until their partition is re-read, so every gap is a WARNING and
    ``streamrec_offset_gaps_total``; the gate above keeps their offsets uncommitted unless
    faust's own gap filling (meant for transaction markers) covers them.

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
