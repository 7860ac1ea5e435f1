"""The engine's tower-v2 path (a learned user tower gives the interests) against the
deterministic ``FakeTower``: the tower reads the recent items newest first with their kind
and age, its interests and weights replace the rule-built slots for retrieval, scoring and
quotas, and ``because`` names the recent items that weigh most in the interest served."""

from __future__ import annotations

import numpy as np
import pytest

from stream_app.core.interests import CLICK, PURCHASE, EventLite, InterestState
from tests.fakes import FakeTower, catalogue, fake_recommender

CATS = ("shoes", "books", "games", "tools", "toys", "food")
T0 = 1_780_000_000.0


def history(rec, items: list[str], kinds: list[int] | None = None, gap_s: float = 3600.0):
    state: InterestState | None = None
    for n, item in enumerate(items):
        kind = kinds[n] if kinds else CLICK
        state = rec.apply(state, EventLite(f"u-{n}", item, T0 + gap_s * n, kind))
    assert state is not None
    return state


def category(item_id: str) -> str:
    return item_id.rsplit("-", 1)[0]


def test_the_tower_reads_recent_items_newest_first_with_kind_and_age():
    rec = fake_recommender(catalogue(CATS, 8), CATS, tower=True, top_k=4, explore=0)
    state = history(rec, ["books-0", "games-0", "books-1"], kinds=[PURCHASE, CLICK, CLICK])
    rec.recommend([state], T0 + 3 * 3600)
    model = rec.bundle.model
    assert isinstance(model, FakeTower)
    last = model.last
    assert last["mask"][0, :4].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert last["kind"][0, :3].tolist() == [CLICK, CLICK, PURCHASE]  # newest first
    np.testing.assert_allclose(last["age"][0, :3], [0.0, 1.0, 2.0])  # hours before the newest


def test_learned_interests_split_the_list_and_explain_it():
    # the fake tower's scores differ little across categories: a milder MMR than the default
    # keeps this about the quotas (at 0.5 a third game loses its seat to a closer-scored toy)
    rec = fake_recommender(
        catalogue(CATS, 12), CATS, tower=True, top_k=8, explore=0, mmr_lambda=0.8
    )
    state = history(rec, ["books-0", "games-0", "books-1", "games-1", "books-2"])
    scored = rec.score_batch([state], T0 + 5 * 3600)
    assert scored.tower_attn is not None
    np.testing.assert_allclose(scored.strengths[0, :2], [0.6, 0.4])  # books 3/5, games 2/5
    assert scored.strengths[0, 2:].tolist() == [0.0, 0.0]
    (recs,) = rec.select(scored)
    cats = [category(r.item_id) for r in recs]
    assert cats.count("books") >= 4 and cats.count("games") >= 3, cats
    for r in recs:
        assert r.interest == (0 if category(r.item_id) == "books" else 1)
        # because: the recent items of that interest (tower attention), newest first
        want = ["books-2", "books-1"] if r.interest == 0 else ["games-1", "games-0"]
        assert r.because == want, (r.item_id, r.because)


def test_the_tower_path_and_the_rule_path_differ_only_in_where_interests_come_from():
    items = catalogue(CATS, 10)
    learned = fake_recommender(items, CATS, tower=True, top_k=6, explore=0, mmr_lambda=0.8)
    rule = fake_recommender(items, CATS, top_k=6, explore=0, mmr_lambda=0.8)
    seq = ["tools-0", "tools-1", "tools-2"]
    (a,) = learned.recommend([history(learned, seq)], T0 + 4 * 3600)
    (b,) = rule.recommend([history(rule, seq)], T0 + 4 * 3600)
    # one interest either way: the same items (the fake tower's interest is the mean of the
    # group, the rule's slot a moving average of the same vectors: same category first)
    assert {category(r.item_id) for r in a} == {"tools"} == {category(r.item_id) for r in b}
    assert "tools-2" not in {r.item_id for r in a}  # the trigger is not shown back


def test_a_weak_learned_interest_gets_no_seat_of_its_own():
    # the fake tower reads 5 recent items: 4 books and 1 game, the game interest weighs 0.2
    rec = fake_recommender(
        catalogue(CATS, 14), CATS, tower=True, top_k=6, explore=0, interest_floor=0.25
    )
    seq = ["books-0", "books-1", "books-2", "games-0", "books-3"]
    scored = rec.score_batch([history(rec, seq)], T0 + 5 * 3600)
    assert scored.strengths[0].tolist()[:2] == [pytest.approx(0.8), 0.0]  # below the floor
    (recs,) = rec.select(scored)
    assert {r.interest for r in recs} == {0} and len(recs) == 6
    low = rec.opts.model_copy(update={"interest_floor": 0.1})
    again = rec.__class__(rec.bundle, rec.params, low)
    (recs,) = again.recommend([history(again, seq)], T0 + 5 * 3600)
    assert {r.interest for r in recs} == {0, 1}  # above the floor: a seat of its own


def test_interest_coverage_counts_the_interests_that_could_get_seats():
    # replay's interest coverage: list tags are learned-interest ids, so its denominator must be
    # the learned interests with seats, not the rule-built slots the state also keeps
    from stream_app.replay.systems import Pick

    rec = fake_recommender(
        catalogue(CATS, 14), CATS, tower=True, top_k=6, explore=0, interest_floor=0.25
    )
    seq = ["books-0", "books-1", "books-2", "games-0", "books-3"]
    state = history(rec, seq)
    assert np.count_nonzero(state.count) == 2  # two rule-built slots: books and games
    pick = Pick(rec.score_batch([state], T0 + 5 * 3600), 0)
    assert pick.active.tolist() == [0]  # games weighs 0.2 < 0.25: no seat, not counted
    low = rec.__class__(rec.bundle, rec.params, rec.opts.model_copy(update={"interest_floor": 0.1}))
    assert Pick(low.score_batch([state], T0 + 5 * 3600), 0).active.tolist() == [0, 1]
