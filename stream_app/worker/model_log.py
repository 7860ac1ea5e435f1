"""What happened to the served model on this worker, with times (``GET /models``): the first
load, each swap (and how long it took), each refused version (and why), each live hit-rate
verdict after a swap, each automatic rollback. Bounded, oldest dropped first."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal

from schemas.api import SwapEntry
from stream_app.worker.hitrate import Verdict

MAX_ENTRIES = 200


def _now() -> datetime:
    return datetime.now(UTC)


class ModelLog:
    def __init__(self, clock: Callable[[], datetime] = _now, size: int = MAX_ENTRIES) -> None:
        self.clock = clock
        self.entries: deque[SwapEntry] = deque(maxlen=size)

    def loaded(self, version: str) -> None:
        self.entries.append(SwapEntry(at=self.clock(), kind="loaded", version=version))

    def swapped(self, version: str, previous: str | None, seconds: float) -> None:
        self.entries.append(
            SwapEntry(
                at=self.clock(),
                kind="swapped",
                version=version,
                previous=previous,
                seconds=round(seconds, 3),
            )
        )

    def refused(self, version: str, serving: str | None, reason: str) -> None:
        self.entries.append(
            SwapEntry(
                at=self.clock(), kind="refused", version=version, previous=serving, reason=reason
            )
        )

    def verdict(self, v: Verdict) -> None:
        word: Literal["keep", "roll back", "no verdict"] = (
            "roll back" if v.rollback else "keep" if v.judged else "no verdict"
        )
        self.entries.append(
            SwapEntry(
                at=self.clock(),
                kind="verdict",
                version=v.version,
                previous=v.previous,
                verdict=word,
                hit_rate_before=v.before,
                hit_rate_after=v.after,
                outcomes_before=v.n_before,
                outcomes_after=v.n_after,
                reason=v.note,
            )
        )

    def rollback(self, bad: str, to: str, reason: str) -> None:
        self.entries.append(
            SwapEntry(at=self.clock(), kind="rollback", version=to, previous=bad, reason=reason)
        )
