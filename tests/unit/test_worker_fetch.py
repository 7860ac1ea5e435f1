"""``FastHandOff``: the fetch loop's per-record ``wait_first(callback, suspend_flow.wait())``
gives what mode's gives (the callback's result; a blocked callback abandoned when the flow
stops), without tasks when the callback does not suspend."""

from __future__ import annotations

import asyncio

import pytest
from mode import Service

from stream_app.worker.fetch import FastHandOff, FlowEvent, FlowWait


class Consumer(FastHandOff, Service):
    pass


async def put(queue: asyncio.Queue, item: int) -> int:
    await queue.put(item)
    return item * 10


async def test_a_callback_that_does_not_suspend_runs_inline():
    c = Consumer()
    assert isinstance(c.suspend_flow, FlowEvent) and isinstance(c.suspend_flow.wait(), FlowWait)
    queue: asyncio.Queue = asyncio.Queue(maxsize=4)
    tasks_before = len(asyncio.all_tasks())
    res = await c.wait_first(put(queue, 3), c.suspend_flow.wait())
    assert not res.stopped and res.results == [30] and queue.get_nowait() == 3
    assert c.hand_offs_inline == 1 and c.hand_offs_resumed == 0
    assert len(asyncio.all_tasks()) == tasks_before


async def test_a_blocked_callback_goes_on_until_it_is_done():
    c = Consumer()
    queue: asyncio.Queue = asyncio.Queue(maxsize=1)
    queue.put_nowait(0)  # full: the put below blocks until a get
    waiter = asyncio.ensure_future(c.wait_first(put(queue, 7), c.suspend_flow.wait()))
    await asyncio.sleep(0.01)
    assert not waiter.done() and c.hand_offs_resumed == 1
    assert queue.get_nowait() == 0
    res = await asyncio.wait_for(waiter, 1.0)
    assert not res.stopped and res.results == [70] and queue.get_nowait() == 7


async def test_a_blocked_callback_is_abandoned_when_the_flow_stops():
    c = Consumer()
    queue: asyncio.Queue = asyncio.Queue(maxsize=1)
    queue.put_nowait(0)
    waiter = asyncio.ensure_future(c.wait_first(put(queue, 7), c.suspend_flow.wait()))
    await asyncio.sleep(0.01)
    c.suspend_flow.set()  # a rebalance: faust's stop_flow
    res = await asyncio.wait_for(waiter, 1.0)
    assert res.results == [True]  # the flow won, as with mode's wait_first
    assert queue.get_nowait() == 0
    await asyncio.sleep(0.01)
    assert queue.empty()  # the abandoned put was withdrawn: the record is not delivered


async def test_with_the_flow_suspended_it_is_modes_wait_first():
    c = Consumer()
    c.suspend_flow.set()
    queue: asyncio.Queue = asyncio.Queue(maxsize=4)
    res = await c.wait_first(put(queue, 1), c.suspend_flow.wait())
    assert c.hand_offs_inline == 0 and c.hand_offs_resumed == 0
    assert True in res.results


async def test_an_error_in_the_callback_propagates_inline_and_after_a_suspension():
    c = Consumer()

    async def boom() -> None:
        msg = "bad record"
        raise ValueError(msg)

    async def boom_later() -> None:
        await asyncio.sleep(0)
        msg = "bad record later"
        raise ValueError(msg)

    with pytest.raises(ValueError, match="bad record"):
        await c.wait_first(boom(), c.suspend_flow.wait())
    with pytest.raises(ValueError, match="later"):
        await c.wait_first(boom_later(), c.suspend_flow.wait())


@pytest.mark.parametrize("key", [None, b"", b"user-1", b"\xff\xfe not utf-8"])
@pytest.mark.parametrize("value", [None, b"{}", b"\x00\x01 raw", b'{"user_id": 1}'])
def test_the_raw_schema_hands_over_the_same_bytes_as_fausts_raw_codec(key, value):
    import faust
    from faust.types import TP
    from faust.types.tuples import ConsumerMessage

    from schemas.settings import Settings
    from stream_app.worker.app import RawSchema, create_app, raw_schema

    app = create_app(Settings())
    msg = ConsumerMessage("events", 0, 1, 0.0, 0, [], key, value, None, 1, 1, tp=TP("events", 0))
    plain = faust.Schema(
        key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )
    ours = raw_schema()
    assert isinstance(ours, RawSchema)
    assert ours.loads_key(app, msg) == plain.loads_key(app, msg)
    assert ours.loads_value(app, msg) == plain.loads_value(app, msg)
    assert ours.loads_key(app, msg) is key and ours.loads_value(app, msg) is value
