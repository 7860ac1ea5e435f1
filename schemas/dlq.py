"""Dead letters: the original value bytes kept as they were, the reason in Kafka headers."""

from __future__ import annotations

ERROR_CLASS = "error.class"
ERROR_MESSAGE = "error.message"
ERROR_REASON = "error.reason"
SOURCE_TOPIC = "source.topic"
SOURCE_PARTITION = "source.partition"
SOURCE_OFFSET = "source.offset"
MAX_HEADER_MESSAGE = 2000


def dlq_headers(
    exc: BaseException, topic: str, partition: int, offset: int, reason: str | None = None
) -> list[tuple[str, bytes]]:
    message = str(exc)
    if len(message) > MAX_HEADER_MESSAGE:
        message = message[: MAX_HEADER_MESSAGE - 3] + "..."
    headers = [
        (ERROR_CLASS, type(exc).__name__.encode()),
        (ERROR_MESSAGE, message.encode()),
        (SOURCE_TOPIC, topic.encode()),
        (SOURCE_PARTITION, str(partition).encode()),
        (SOURCE_OFFSET, str(offset).encode()),
    ]
    reason = reason or getattr(exc, "reason", None) or "error"
    headers.append((ERROR_REASON, str(reason).encode()))
    return headers


def headers_dict(headers: list[tuple[str, bytes]] | None) -> dict[str, str]:
    return {k: (v or b"").decode("utf-8", "replace") for k, v in (headers or [])}
