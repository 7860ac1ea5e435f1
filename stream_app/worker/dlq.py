"""Dead letters of the worker: the ORIGINAL value bytes and key, with the contract's headers
(``schemas.dlq``: error.class, error.message, error.reason, source.topic, source.partition,
source.offset).

A value too large for the producer or the DLQ topic is sent cut to ``max_bytes`` with two
extra headers (``error.truncated: true`` and ``source.bytes``), so the event is still
accounted for; the reason stays the original one.
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.dlq import dlq_headers

TRUNCATED = "error.truncated"
SOURCE_BYTES = "source.bytes"


@dataclass(frozen=True)
class Where:
    """Where a message came from; ``str()`` is the ``topic[partition]@offset`` of log lines."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True)
class DeadLetter:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    reason: str
    where: Where
    event_id: str | None = None

    def truncated(self, max_bytes: int) -> DeadLetter:
        size = len(self.value or b"")
        headers = [*self.headers, (TRUNCATED, b"true"), (SOURCE_BYTES, str(size).encode())]
        return DeadLetter(
            self.key,
            (self.value or b"")[:max_bytes],
            headers,
            self.reason,
            self.where,
            self.event_id,
        )


def dead_letter(
    exc: BaseException,
    key: bytes | None,
    value: bytes | None,
    where: Where,
    reason: str | None = None,
    event_id: str | None = None,
) -> DeadLetter:
    reason = reason or getattr(exc, "reason", None) or "error"
    headers = dlq_headers(exc, where.topic, where.partition, where.offset, reason)
    return DeadLetter(key, value, headers, reason, where, event_id)
