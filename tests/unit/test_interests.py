from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.core.interests import (
    CLICK,
    PURCHASE,
    EventLite,
    InterestParams,
    new_state,
    rebuild_state,
    state_from_bytes,
    state_to_bytes,
    update_interests,
)

DIM = 8
PARAMS = InterestParams(k=3, recent=5, half_life_s=3600.0, max_event_ids=6, max_purchased=4)


def unit(i: int, dim: int = DIM) -> np.ndarray:
    v = np.zeros(dim, np.float32)
    v[i % dim] = 1.0
    return v


vec_st = st.lists(
    st.floats(-10, 10, allow_nan=False, allow_infinity=False), min_size=DIM, max_size=DIM
).filter(lambda xs: float(np.linalg.norm(xs)) > 1e-3)
event_st = st.tuples(
    st.integers(0, 30),  # event id (collisions on purpose: redeliveries)
    st.integers(0, 9),  # item id
    st.floats(0, 1e6),  # time step
    st.sampled_from([CLICK, PURCHASE]),
    vec_st,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(event_st, min_size=1, max_size=40))
def test_invariants_hold_for_any_event_sequence(events):
    state = new_state(PARAMS.k, DIM, "s")
    ts = 1_700_000_000.0
    for eid, item, step, kind, vec in events:
        ts += step
        state = update_interests(
            state, np.array(vec), EventLite(f"e{eid}", f"i{item}", ts, kind), PARAMS
        )
        assert np.isfinite(state.slots).all()
        norms = np.linalg.norm(state.slots, axis=1)
        assert np.all((np.abs(norms - 1) < 1e-4) | (norms == 0))
        assert (norms == 0).sum() == (state.count == 0).sum()
        assert (state.strength >= 0).all() and np.isfinite(state.strength).all()
        assert state.slots.shape == (PARAMS.k, DIM)
        assert len(state.recent_items) <= PARAMS.recent
        assert len(state.recent_items) == len(state.recent_ts) == len(state.recent_slot)
        assert len(state.event_ids) <= PARAMS.max_event_ids
        assert len(state.purchased) <= PARAMS.max_purchased
        assert all(-1 <= s < PARAMS.k for s in state.recent_slot)
    assert state_from_bytes(state_to_bytes(state)).equals(state)


@settings(max_examples=100, deadline=None)
@given(st.lists(event_st, min_size=1, max_size=20), st.integers(0, 19))
def test_replaying_an_event_with_the_same_id_changes_nothing(events, pick):
    state = new_state(PARAMS.k, DIM, "s")
    seen = []
    ts = 1.0
    for eid, item, step, kind, vec in events:
        ts += step
        ev = EventLite(f"e{eid}-{len(seen)}", f"i{item}", ts, kind)
        seen.append((ev, np.array(vec)))
        state = update_interests(state, np.array(vec), ev, PARAMS)
    # redeliver one of the last max_event_ids events (those are remembered)
    ev, vec = seen[-1 - pick % min(len(seen), PARAMS.max_event_ids)]
    again = update_interests(state, vec, ev, PARAMS)
    assert again is state
    assert state_to_bytes(again) == state_to_bytes(state)


def test_similar_items_join_a_slot_and_dissimilar_ones_open_a_new_one():
    state = new_state(3, DIM, "s")
    state = update_interests(state, unit(0), EventLite("a", "x", 10.0, CLICK), PARAMS)
    close = unit(0) + 0.2 * unit(1)
    state = update_interests(state, close, EventLite("b", "y", 11.0, CLICK), PARAMS)
    assert list(state.count) == [2, 0, 0]
    state = update_interests(state, unit(3), EventLite("c", "z", 12.0, PURCHASE), PARAMS)
    assert list(state.count) == [2, 1, 0]
    assert state.recent_slot == [0, 0, 1]
    assert state.purchased == ["z"]
    # purchases weigh more than clicks
    assert state.strength[1] == pytest.approx(PARAMS.purchase_weight, rel=1e-3)
    assert state.because(0) == ["y", "x"]


def test_weakest_slot_is_replaced_when_full_and_strength_decays():
    p = InterestParams(k=2, recent=10, half_life_s=100.0)
    state = new_state(2, DIM, "s")
    state = update_interests(state, unit(0), EventLite("a", "x", 0.0, PURCHASE), p)
    state = update_interests(state, unit(1), EventLite("b", "y", 0.0, CLICK), p)
    # 100 s later: strengths halve
    state = update_interests(state, unit(2), EventLite("c", "z", 100.0, CLICK), p)
    # slot 1 (click, weaker) was replaced by the new interest; slot 0 decayed 3 -> 1.5
    assert np.allclose(state.slots[1], unit(2))
    assert state.strength[0] == pytest.approx(1.5, rel=1e-4)
    assert state.recent_slot == [0, -1, 1]  # y's slot is gone: no longer an explanation


def test_moving_average_follows_drift():
    state = new_state(1, DIM, "s")
    a, b = unit(0), unit(0) * 0.6 + unit(1) * 0.8
    state = update_interests(state, a, EventLite("0", "x", 0.0, CLICK), PARAMS)
    for n in range(50):
        state = update_interests(state, b, EventLite(f"e{n}", "y", float(n), CLICK), PARAMS)
    assert float(state.slots[0] @ (b / np.linalg.norm(b))) > 0.99


def test_bad_vectors_are_rejected_with_the_item_named():
    state = new_state(2, DIM, "s")
    with pytest.raises(ValueError, match="'bad'.*finite non-zero"):
        update_interests(state, np.zeros(DIM), EventLite("a", "bad", 0.0, CLICK), PARAMS)
    with pytest.raises(ValueError, match="dimension 8, got 4"):
        update_interests(state, np.ones(4), EventLite("a", "x", 0.0, CLICK), PARAMS)


def test_rebuild_moves_state_to_a_new_space():
    state = new_state(3, DIM, "old")
    for n in range(4):
        state = update_interests(
            state, unit(n % 2), EventLite(f"e{n}", f"i{n % 2}", float(n), n % 2), PARAMS
        )
    vectors = {"i0": unit(5, 6), "i1": unit(4, 6)}
    moved = rebuild_state(state, vectors, "new", PARAMS)
    assert moved.space == "new" and moved.slots.shape == (3, 6)
    assert moved.event_ids == state.event_ids and moved.purchased == state.purchased
    assert sorted(moved.count.tolist()) == [0, 2, 2]


def test_state_bytes_round_trip_odd_values_and_read_the_json_written_before():
    import json
    import math
    import struct

    state = update_interests(
        new_state(PARAMS.k, DIM, "s"),
        np.ones(DIM),
        EventLite("e-ü", "item-é/✓", 1_700_000_000.125, 1),
        PARAMS,
    )
    back = state_from_bytes(state_to_bytes(state))
    assert back.equals(state) and back.recent_items == ["item-é/✓"]
    assert back.recent_ts == [1_700_000_000.125] and back.event_ids == ["e-ü"]
    # a non-finite timestamp (never from a validated event) is kept, not turned into null
    odd = replace(state, updated=math.inf, recent_ts=[math.nan])
    odd_back = state_from_bytes(state_to_bytes(odd))
    assert odd_back.updated == math.inf and math.isnan(odd_back.recent_ts[0])
    # states written with json.dumps (stored in RocksDB / changelogs before orjson) still read
    raw = state_to_bytes(state)
    hlen = struct.unpack_from("<III", raw, 4)[0]
    header = json.loads(raw[16 : 16 + hlen])
    old = json.dumps(header, separators=(",", ":")).encode()
    legacy = raw[:4] + struct.pack("<I", len(old)) + raw[8:16] + old + raw[16 + hlen :]
    assert state_from_bytes(legacy).equals(state)
