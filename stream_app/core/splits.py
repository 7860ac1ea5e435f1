"""Evaluation splits shared by training (``--split loo|time``) and replay (``--protocol loo``).

Leave-one-out (as in the RecBole / UniSRec papers): a user's sequence is their items in
time order (equal timestamps keep input order) with CONSECUTIVE repeats of the same item
merged into one interaction (a click then a purchase of the same item is one interaction,
marked purchase if any merged event was a purchase, keeping the first event's index and
timestamp; a non-consecutive repeat is a new interaction). The last interaction is the test
target, the one before it the validation target, the rest is training.

Short sequences: 3 or more interactions -> train / valid / test; exactly 2 -> train is the
first, test the second, no valid; 1 -> train only (no held-out target).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

_EVENT_TYPES = ("click", "purchase")


class EventLike(Protocol):
    """What the splits read from an event (``schemas.events`` models satisfy it)."""

    @property
    def user_id(self) -> str: ...

    @property
    def item_id(self) -> str: ...

    @property
    def ts(self) -> datetime: ...

    @property
    def event_type(self) -> str: ...


@dataclass(frozen=True)
class Interaction:
    """One merged interaction of a user's sequence.

    ``ts`` is epoch seconds of its first event, ``event_index`` the input position of its
    first event and ``event_indices`` the input positions of every event merged into it.
    """

    item_id: str
    ts: float
    purchase: bool
    event_index: int
    event_indices: tuple[int, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not self.event_indices:
            object.__setattr__(self, "event_indices", (self.event_index,))


def _epoch_seconds(ts: datetime, index: int) -> float:
    if not isinstance(ts, datetime) or ts.tzinfo is None or ts.utcoffset() is None:
        msg = f"events[{index}].ts: expected a timezone-aware datetime, got {ts!r}"
        raise ValueError(msg)
    return ts.timestamp()


def _event_type(event: EventLike, index: int) -> str:
    kind = event.event_type
    if kind not in _EVENT_TYPES:
        msg = f"events[{index}].event_type: expected 'click' or 'purchase', got {kind!r}"
        raise ValueError(msg)
    return kind


def user_sequences(events: Iterable[EventLike]) -> dict[str, list[Interaction]]:
    """Each user's merged interactions in time order (users in order of first appearance)."""
    raw: dict[str, list[tuple[float, int, str, bool]]] = {}
    for i, event in enumerate(events):
        ts = _epoch_seconds(event.ts, i)
        purchase = _event_type(event, i) == "purchase"
        raw.setdefault(event.user_id, []).append((ts, i, event.item_id, purchase))
    sequences: dict[str, list[Interaction]] = {}
    for user, rows in raw.items():
        rows.sort(key=lambda row: row[0])  # stable: equal timestamps keep input order
        merged: list[Interaction] = []
        for ts, i, item, purchase in rows:
            last = merged[-1] if merged else None
            if last is not None and last.item_id == item:
                merged[-1] = Interaction(
                    item_id=item,
                    ts=last.ts,
                    purchase=last.purchase or purchase,
                    event_index=last.event_index,
                    event_indices=(*last.event_indices, i),
                )
            else:
                merged.append(Interaction(item, ts, purchase, i))
        sequences[user] = merged
    return sequences


@dataclass(frozen=True)
class UserSplit:
    """One user's leave-one-out split."""

    train: list[Interaction]
    valid: Interaction | None
    test: Interaction | None

    @property
    def heldout(self) -> list[Interaction]:
        """The held-out interactions in time order (valid then test, where present)."""
        return [x for x in (self.valid, self.test) if x is not None]

    def history_for_test(self) -> list[Interaction]:
        """What precedes the test target: the train prefix plus the validation target."""
        return self.train + ([self.valid] if self.valid is not None else [])


def split_sequence(sequence: Sequence[Interaction]) -> UserSplit:
    """Leave-one-out split of one merged sequence (see the module docstring)."""
    n = len(sequence)
    if n >= 3:
        return UserSplit(list(sequence[:-2]), sequence[-2], sequence[-1])
    if n == 2:
        return UserSplit([sequence[0]], None, sequence[1])
    return UserSplit(list(sequence), None, None)


@dataclass(frozen=True)
class LooSplit:
    """Leave-one-out split of every user (``users`` keeps first-appearance order)."""

    users: dict[str, UserSplit]

    def __getitem__(self, user: str) -> UserSplit:
        return self.users[user]

    def __iter__(self) -> Iterator[str]:
        return iter(self.users)

    def __len__(self) -> int:
        return len(self.users)

    def train_sequences(self) -> dict[str, list[Interaction]]:
        """Each user's train prefix."""
        return {user: s.train for user, s in self.users.items()}

    def train_event_indices(self) -> set[int]:
        """Input-event positions usable for training: every event merged into a train-prefix
        interaction. Events merged into a valid or test interaction are held out, even when
        they are not the first event of that interaction."""
        return {i for s in self.users.values() for x in s.train for i in x.event_indices}

    def heldout_event_indices(self) -> set[int]:
        """Input-event positions merged into a validation or test interaction."""
        return {i for s in self.users.values() for x in s.heldout for i in x.event_indices}

    def cutoff_for(self, user: str) -> float | None:
        """Epoch seconds of the user's first held-out interaction (valid, else test).

        The user's events strictly before it are training events; events AT the cutoff can
        be on either side (equal timestamps are ordered by input position), so use
        ``train_event_indices`` for the exact set. ``None`` when nothing is held out.
        """
        held = self.users[user].heldout
        return held[0].ts if held else None


def loo_split(events: Iterable[EventLike]) -> LooSplit:
    """Merge each user's events into a sequence and split it leave-one-out."""
    return LooSplit({user: split_sequence(seq) for user, seq in user_sequences(events).items()})


class TimeSplit(NamedTuple):
    """Global temporal split: index arrays into the input events and the two cut times."""

    train_idx: npt.NDArray[np.int64]
    valid_idx: npt.NDArray[np.int64]
    test_idx: npt.NDArray[np.int64]
    valid_start: float
    test_start: float


def _check_frac(name: str, value: float) -> float:
    if not (isinstance(value, int | float) and 0.0 <= value < 1.0):
        msg = f"{name}: expected a fraction in [0, 1), got {value!r}"
        raise ValueError(msg)
    return float(value)


def time_split(
    events: Sequence[EventLike], valid_frac: float = 0.1, test_frac: float = 0.1
) -> TimeSplit:
    """Split all events by global time quantiles of the event timestamps.

    With ``t`` the timestamps sorted ascending and ``n`` events, ``test_start =
    t[floor(n * (1 - test_frac))]`` and ``valid_start = t[floor(n * (1 - test_frac -
    valid_frac))]`` (``+inf`` when the position is ``n``, i.e. a zero fraction). Test is
    ``ts >= test_start``, valid ``valid_start <= ts < test_start``, train ``ts <
    valid_start``. Cuts are timestamps, so equal timestamps never straddle a boundary and
    the sizes deviate from the fractions when ties sit at a cut. Indices are ascending.
    """
    valid_frac = _check_frac("valid_frac", valid_frac)
    test_frac = _check_frac("test_frac", test_frac)
    if valid_frac + test_frac >= 1.0:
        msg = f"valid_frac + test_frac: expected < 1, got {valid_frac + test_frac}"
        raise ValueError(msg)
    ts = np.array([_epoch_seconds(e.ts, i) for i, e in enumerate(events)], dtype=np.float64)
    n = ts.size
    if n == 0:
        msg = "events: expected at least one event, got none"
        raise ValueError(msg)
    ordered = np.sort(ts)

    def cut(frac: float) -> float:
        pos = math.floor(n * (1.0 - frac) + 1e-9)
        return float(ordered[pos]) if pos < n else math.inf

    test_start = cut(test_frac)
    valid_start = min(cut(test_frac + valid_frac), test_start)
    test = ts >= test_start
    valid = (ts >= valid_start) & ~test
    train = ts < valid_start
    return TimeSplit(
        np.flatnonzero(train).astype(np.int64),
        np.flatnonzero(valid).astype(np.int64),
        np.flatnonzero(test).astype(np.int64),
        valid_start,
        test_start,
    )
