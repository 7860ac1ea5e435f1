"""Pieces of the events agent that need no broker: the per-event faust context used for table
partitions, and cutting a dead letter down until the DLQ topic accepts it."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from faust.streams import current_event

from schemas.dlq import headers_dict
from stream_app.worker import agents
from stream_app.worker.dlq import Where, dead_letter


class FakeEvent:  # faust keeps a weak reference to the current event
    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


def test_event_context_makes_each_event_current_in_turn():
    a, b = FakeEvent(3), FakeEvent(1)
    assert current_event() is None
    with agents.event_context(a):
        assert current_event() is a
        with agents.event_context(b):
            assert current_event().message.partition == 1  # type: ignore[union-attr]
        assert current_event() is a
    assert current_event() is None


class FakeTopic:
    """Rejects values above ``limit`` bytes: in send() itself (producer) or in the future
    (broker), like aiokafka."""

    def __init__(self, limit: int, at_broker: bool) -> None:
        self.limit, self.at_broker = limit, at_broker
        self.sent: list[tuple[bytes | None, list[tuple[str, bytes]] | None]] = []

    async def send(self, key, value, headers):  # type: ignore[no-untyped-def]
        too_big = len(value or b"") > self.limit
        if too_big and not self.at_broker:
            raise MessageSizeTooLargeError
        fut = asyncio.get_running_loop().create_future()
        if too_big:
            fut.set_exception(MessageSizeTooLargeError())
        else:
            self.sent.append((value, headers))
            fut.set_result(None)
        return fut


@pytest.mark.parametrize("at_broker", [False, True])
@pytest.mark.parametrize(("limit", "expected"), [(2_000_000, 1_000_000), (200_000, 65_536),
                                                 (1_000, 0)])  # fmt: skip
async def test_a_dead_letter_too_large_for_the_dlq_is_cut_down_not_fatal(
    at_broker: bool, limit: int, expected: int
):
    dead = dead_letter(ValueError("bad"), b"k", b"x" * 3_000_000, Where("events", 1, 7), "json")
    topic = FakeTopic(limit, at_broker)
    send = await agents._Send(topic, dead.key, dead.value, dead.headers, dead, 0.0).start(1_000_000)
    await send.wait(1_000_000)
    ((value, headers),) = topic.sent
    assert len(value or b"") == expected
    h = headers_dict(headers)
    assert h["error.truncated"] == "true" and h["source.bytes"] == "3000000"
    assert h["error.reason"] == "json" and h["source.offset"] == "7"
    assert list(h).count("error.truncated") == 1
