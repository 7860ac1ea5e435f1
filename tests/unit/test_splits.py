"""Leave-one-out and temporal splits."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pytest

from schemas.events import ClickEvent, PurchaseEvent
from stream_app.core.splits import (
    Interaction,
    loo_split,
    split_sequence,
    time_split,
    user_sequences,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def ev(user: str, item: str, sec: float, kind: str = "click") -> SimpleNamespace:
    return SimpleNamespace(
        user_id=user, item_id=item, ts=T0 + timedelta(seconds=sec), event_type=kind
    )


def items(seq: list[Interaction]) -> list[str]:
    return [x.item_id for x in seq]


def test_consecutive_repeats_merge_and_keep_first_event() -> None:
    events = [ev("u", "a", 0), ev("u", "b", 1), ev("u", "b", 2, "purchase"), ev("u", "c", 3)]
    seq = user_sequences(events)["u"]
    assert items(seq) == ["a", "b", "c"]
    b = seq[1]
    assert b.purchase is True
    assert b.event_index == 1
    assert b.event_indices == (1, 2)
    assert b.ts == (T0 + timedelta(seconds=1)).timestamp()
    assert seq[0].purchase is False


def test_non_consecutive_repeats_are_not_merged() -> None:
    events = [ev("u", "a", 0), ev("u", "b", 1), ev("u", "a", 2)]
    assert items(user_sequences(events)["u"]) == ["a", "b", "a"]


def test_time_order_with_ties_in_input_order() -> None:
    # input not in time order; "x" and "y" share a timestamp and keep input order
    events = [ev("u", "z", 5), ev("u", "x", 1), ev("v", "q", 0), ev("u", "y", 1)]
    seqs = user_sequences(events)
    assert list(seqs) == ["u", "v"]
    assert items(seqs["u"]) == ["x", "y", "z"]
    assert [x.event_index for x in seqs["u"]] == [1, 3, 0]


def test_merge_happens_after_time_ordering() -> None:
    # the purchase arrives first in the input but is consecutive in time with the click
    events = [ev("u", "b", 2, "purchase"), ev("u", "a", 0), ev("u", "b", 1)]
    seq = user_sequences(events)["u"]
    assert items(seq) == ["a", "b"]
    assert seq[1].purchase and seq[1].event_index == 2 and seq[1].event_indices == (2, 0)


def test_schema_events_are_accepted() -> None:
    events: list[ClickEvent | PurchaseEvent] = [
        ClickEvent(event_id="1", user_id="u", item_id="a", ts=T0, event_type="click"),
        PurchaseEvent(event_id="2", user_id="u", item_id="a", ts=T0, event_type="purchase"),
    ]
    seq = user_sequences(events)["u"]
    assert len(seq) == 1 and seq[0].purchase


def test_bad_events_are_rejected() -> None:
    naive = SimpleNamespace(user_id="u", item_id="a", ts=datetime(2024, 1, 1), event_type="click")  # noqa: DTZ001
    with pytest.raises(ValueError, match=r"events\[0\]\.ts"):
        user_sequences([naive])
    with pytest.raises(ValueError, match=r"events\[0\]\.event_type"):
        user_sequences([ev("u", "a", 0, "view")])


def test_split_sizes_for_short_users() -> None:
    seq = [Interaction(str(i), float(i), False, i) for i in range(4)]
    one = split_sequence(seq[:1])
    assert items(one.train) == ["0"] and one.valid is None and one.test is None
    two = split_sequence(seq[:2])
    assert items(two.train) == ["0"] and two.valid is None and two.test == seq[1]
    three = split_sequence(seq[:3])
    assert items(three.train) == ["0"] and three.valid == seq[1] and three.test == seq[2]
    four = split_sequence(seq)
    assert items(four.train) == ["0", "1"] and four.valid == seq[2] and four.test == seq[3]
    assert items(four.history_for_test()) == ["0", "1", "2"]


def test_loo_split_users_and_cutoffs() -> None:
    events = [
        ev("one", "a", 0),
        ev("two", "a", 0),
        ev("two", "b", 5),
        ev("three", "a", 0),
        ev("three", "b", 1),
        ev("three", "c", 2),
    ]
    split = loo_split(events)
    assert list(split) == ["one", "two", "three"] and len(split) == 3
    assert split.cutoff_for("one") is None
    assert split.cutoff_for("two") == (T0 + timedelta(seconds=5)).timestamp()
    assert split.cutoff_for("three") == (T0 + timedelta(seconds=1)).timestamp()
    assert split.train_event_indices() == {0, 1, 3}
    assert split.heldout_event_indices() == {2, 4, 5}
    assert items(split["three"].train) == ["a"]


def test_events_merged_into_heldout_interactions_are_held_out() -> None:
    # the valid target "b" is a click + purchase; the test target "c" too
    events = [
        ev("u", "a", 0),
        ev("u", "b", 1),
        ev("u", "b", 2, "purchase"),
        ev("u", "c", 3),
        ev("u", "c", 4, "purchase"),
    ]
    split = loo_split(events)
    assert split.train_event_indices() == {0}
    assert split.heldout_event_indices() == {1, 2, 3, 4}
    assert split["u"].valid is not None and split["u"].valid.purchase


def test_train_indices_never_reach_the_valid_target() -> None:
    rng = random.Random(7)
    events = [
        ev(
            f"u{rng.randrange(30)}",
            f"i{rng.randrange(12)}",
            rng.randrange(200),
            rng.choice(["click", "purchase"]),
        )  # fmt: skip
        for _ in range(1500)
    ]
    split = loo_split(events)
    train = split.train_event_indices()
    assert train.isdisjoint(split.heldout_event_indices())
    assert len(train) + len(split.heldout_event_indices()) == len(events)
    seqs = user_sequences(events)
    for user, seq in seqs.items():
        order = [i for x in seq for i in x.event_indices]  # the user's events in time order
        s = split[user]
        if not s.heldout:
            continue
        first_heldout = order.index(s.heldout[0].event_index)
        assert all(i in train for i in order[:first_heldout])
        assert not any(i in train for i in order[first_heldout:])
        cutoff = split.cutoff_for(user)
        assert cutoff is not None
        assert all(events[i].ts.timestamp() <= cutoff for i in train if events[i].user_id == user)


def test_time_split_boundaries() -> None:
    # 20 events at seconds 0..19 (shuffled): test = last 10% = {18, 19}, valid = {16, 17}
    secs = list(range(20))
    random.Random(1).shuffle(secs)
    events = [ev("u", "a", s) for s in secs]
    tr, va, te, valid_start, test_start = time_split(events)
    assert valid_start == (T0 + timedelta(seconds=16)).timestamp()
    assert test_start == (T0 + timedelta(seconds=18)).timestamp()
    assert sorted(secs[i] for i in te) == [18, 19]
    assert sorted(secs[i] for i in va) == [16, 17]
    assert sorted(secs[i] for i in tr) == list(range(16))
    assert tr.dtype == np.int64 and list(tr) == sorted(tr)


def test_time_split_ties_stay_on_one_side_and_zero_fraction() -> None:
    # seconds 0..7 then four events at 8: the test cut (position 10 of 12 -> 8) takes all four
    events = [ev("u", "a", s) for s in [*range(8), 8, 8, 8, 8]]
    split = time_split(events, valid_frac=0.0, test_frac=1 / 6)
    assert split.test_idx.tolist() == [8, 9, 10, 11]
    assert split.valid_idx.size == 0 and split.train_idx.tolist() == list(range(8))
    nothing_held = time_split(events, valid_frac=0.0, test_frac=0.0)
    assert nothing_held.train_idx.size == 12 and math.isinf(nothing_held.test_start)
    with pytest.raises(ValueError, match="valid_frac"):
        time_split(events, valid_frac=-0.1)
    with pytest.raises(ValueError, match="valid_frac \\+ test_frac"):
        time_split(events, valid_frac=0.5, test_frac=0.5)
    with pytest.raises(ValueError, match="events"):
        time_split([])
