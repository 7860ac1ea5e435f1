"""A fast path for faust's per-message hand-off from the fetcher to the streams.

faust's fetch loop (``Consumer._drain_messages``) hands every record to the streams with
``await self.wait_first(callback(message), self.suspend_flow.wait())``: the callback (decode,
put on the stream's queue) races "flow suspended" (a rebalance), so a callback blocked on a
full queue is abandoned when the flow stops. mode's ``wait_first`` makes four tasks and an
``asyncio.wait`` for that, per message: 28 µs per message on this machine (``wait_first``
against an awaited coroutine, 20,000 calls), while the callback itself almost always finishes
without suspending at all.

``FastHandOff.wait_first`` (mixed into the worker's consumer, ``acks.guarded_consumer``) runs
that one call's callback up to its first suspension, inline, when the flow is not suspended
and the consumer neither stopped nor crashed; finished there (the common case) it returns what
mode's ``wait_first`` would, with no task made. A callback that does suspend (its queue is
full) goes on in a task (``resume``) raced against the flow through mode's own
``wait_first``, as before. Every other ``wait_first`` call is mode's. The call is recognised
by its second argument: ``suspend_flow`` is a ``FlowEvent``, whose ``wait()`` is a
``FlowWait``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

from mode.services import WaitResults


class FlowWait:
    """``await flow_event.wait()``, recognisable (not a coroutine: nothing to close if unused)."""

    __slots__ = ("event",)

    def __init__(self, event: asyncio.Event) -> None:
        self.event = event

    def __await__(self) -> Generator[Any, None, bool]:
        return asyncio.Event.wait(self.event).__await__()


class FlowEvent(asyncio.Event):
    """faust's ``Consumer.suspend_flow`` (an asyncio Event) with a recognisable ``wait()``."""

    def wait(self) -> FlowWait:  # type: ignore[override]
        return FlowWait(self)


async def resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Any:
    """Run ``coro`` on from its first suspension (where it yielded ``yielded``), as an asyncio
    Task would: await what it waits for, then step it again. Cancelled, it closes ``coro`` (its
    ``finally`` blocks run, e.g. a queue put is withdrawn) and re-raises."""
    while True:
        if yielded is not None and not asyncio.isfuture(yielded):
            coro.close()
            msg = f"a coroutine yielded {yielded!r}, not a future"
            raise RuntimeError(msg)
        try:
            if yielded is None:  # a bare yield (asyncio.sleep(0))
                await asyncio.sleep(0)
            else:  # what a Task does with a yielded future: take it off "blocking", wait
                yielded._asyncio_future_blocking = False
                await yielded
        except asyncio.CancelledError:
            coro.close()
            raise
        except Exception:  # noqa: BLE001 - coro sees it through the future's result()
            pass
        try:
            yielded = coro.send(None)
        except StopIteration as done:
            return done.value


class FastHandOff:
    """Mixin for a faust ``Consumer``: its ``suspend_flow`` becomes a ``FlowEvent`` and its
    fetch loop's per-message ``wait_first`` takes the fast path (module docstring)."""

    hand_offs_inline = 0
    hand_offs_resumed = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.suspend_flow = FlowEvent()  # type: ignore[assignment]

    async def wait_first(self, *coros: Any, timeout: Any = None) -> Any:
        base = super()
        if (
            len(coros) == 2
            and timeout is None
            and isinstance(coros[1], FlowWait)
            and asyncio.iscoroutine(coros[0])
            and not coros[1].event.is_set()
            and not self._stopped.is_set()  # type: ignore[attr-defined]
            and not self._crashed.is_set()  # type: ignore[attr-defined]
        ):
            coro = coros[0]
            try:
                yielded = coro.send(None)
            except StopIteration as done:
                self.hand_offs_inline += 1
                return WaitResults([coro], [done.value], False)
            self.hand_offs_resumed += 1
            return await base.wait_first(resume(coro, yielded), coros[1])  # type: ignore[attr-defined]
        return await base.wait_first(*coros, timeout=timeout)  # type: ignore[attr-defined]
