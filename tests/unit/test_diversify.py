import numpy as np
import pytest

from stream_app.core.diversify import by_score_within_pages, mmr_select, slot_quotas


def test_quotas_are_proportional_and_sum_to_k():
    assert slot_quotas(np.array([3.0, 1.0, 0.0, 1.0]), 10).tolist() == [5, 3, 0, 2]
    assert slot_quotas(np.array([3.0, 1.0, 0.0, 1.0]), 2).tolist() == [1, 1, 0, 0]
    assert slot_quotas(np.array([0.0, 0.0]), 5).tolist() == [0, 0]
    rng = np.random.default_rng(0)
    for _ in range(200):
        s = rng.random(5) * (rng.random(5) > 0.3)
        k = int(rng.integers(1, 20))
        q = slot_quotas(s, k)
        assert q.sum() == (k if s.any() else 0) and (q[s == 0] == 0).all()
        if s.any() and k >= (s > 0).sum():
            assert (q[s > 0] >= 1).all()


def unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def test_lambda_one_without_quotas_is_plain_top_k():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    vecs = np.eye(5)
    assert mmr_select(scores, vecs, np.zeros(5, int), None, 3, 1.0) == [1, 3, 2]


def test_mmr_skips_near_duplicates():
    # items 0 and 1 are the same direction; 2 is different but scores a bit lower
    vecs = np.array([unit([1, 0]), unit([1, 0.01]), unit([0, 1])])
    scores = np.array([1.0, 0.95, 0.8])
    assert mmr_select(scores, vecs, np.zeros(3, int), None, 2, 1.0) == [0, 1]
    assert mmr_select(scores, vecs, np.zeros(3, int), None, 2, 0.5) == [0, 2]


def test_quotas_give_each_interest_its_seats_and_relax_when_exhausted():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.1])
    slots = np.array([0, 0, 0, 0, 1])
    vecs = np.eye(5)
    picked = mmr_select(scores, vecs, slots, np.array([2, 1]), 3, 1.0)
    assert picked == [0, 1, 4]  # slot 1's seat goes to its (weak) item
    # slot 1 has no more items: the fourth seat relaxes to the best remaining
    assert mmr_select(scores, vecs, slots, np.array([2, 2]), 4, 1.0) == [0, 1, 4, 2]


def test_exploration_is_capped():
    scores = np.array([0.9, 0.8, 0.7, 0.2])
    slots = np.array([-1, -1, -1, 0])
    assert mmr_select(scores, np.eye(4), slots, None, 3, 1.0, explore_max=1) == [0, 3, 1]


@pytest.mark.parametrize("c", [5, 200])
def test_picks_are_unique_and_valid(c):
    rng = np.random.default_rng(c)
    vecs = rng.normal(size=(c, 8))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    picked = mmr_select(rng.random(c), vecs, rng.integers(-1, 3, c), np.array([4, 3, 3]), 10, 0.7)
    assert len(picked) == min(10, c) and len(set(picked)) == len(picked)
    assert all(0 <= p < c for p in picked)


def test_batched_quotas_equal_the_single_user_version():
    from stream_app.core.diversify import slot_quotas_batch

    rng = np.random.default_rng(1)
    s = rng.random((300, 5)) * (rng.random((300, 5)) > 0.4)
    for k in (1, 3, 10, 17):
        expected = np.stack([slot_quotas(row, k) for row in s])
        assert (slot_quotas_batch(s, k) == expected).all()


@pytest.mark.parametrize("lam", [1.0, 0.7])
def test_batched_mmr_equals_the_single_user_version(lam):
    from stream_app.core.diversify import mmr_select_batch

    rng = np.random.default_rng(2)
    b, p, d = 40, 30, 6
    scores = rng.random((b, p))
    scores[rng.random((b, p)) < 0.2] = -np.inf  # missing candidates
    vecs = rng.normal(size=(b, p, d))
    vecs /= np.linalg.norm(vecs, axis=2, keepdims=True)
    slots = rng.integers(-1, 3, (b, p))
    quotas = rng.integers(0, 4, (b, 3))
    got = mmr_select_batch(scores, vecs, slots, quotas, 10, lam, explore_max=1)
    for r in range(b):
        ok = np.isfinite(scores[r])
        idx = np.flatnonzero(ok)
        single = mmr_select(scores[r][ok], vecs[r][ok], slots[r][ok], quotas[r], 10, lam, 1)
        want = [int(idx[j]) for j in single]
        assert got[r][: len(want)].tolist() == want and (got[r][len(want) :] == -1).all()


def test_each_page_is_shown_in_score_order_and_keeps_its_items():
    scores = np.array([[0.9, 0.1, 0.5, 0.7, 0.3, 0.8, -np.inf]])
    picked = np.array([[0, 2, 1, 5, 3, 4, -1]])  # MMR order: pages of 3 = {0,2,1} {5,3,4} {-1}
    out = by_score_within_pages(picked, scores, 3)
    assert out.tolist() == [[0, 2, 1, 5, 3, 4, -1]]  # already in order within each page
    picked = np.array([[1, 2, 0, 4, 3, 5, -1]])
    out = by_score_within_pages(picked, scores, 3)
    assert out.tolist() == [[0, 2, 1, 5, 3, 4, -1]]  # no item crosses a page boundary
    assert by_score_within_pages(picked, scores, 10).tolist() == [[0, 5, 3, 2, 4, 1, -1]]
    assert by_score_within_pages(picked, scores, 1).tolist() == picked.tolist()  # page 1: as is
    with pytest.raises(ValueError, match="page"):
        by_score_within_pages(picked, scores, 0)


def test_page_ordering_keeps_empty_seats_last_and_ties_in_mmr_order():
    rng = np.random.default_rng(1)
    for _ in range(100):
        b, pool, k, page = 4, 12, int(rng.integers(1, 12)), int(rng.integers(1, 6))
        scores = np.round(rng.random((b, pool)), 1)  # ties are common at one decimal
        picked = np.stack([rng.permutation(pool)[:k] for _ in range(b)])
        short = rng.integers(0, k + 1, b)  # rows with fewer candidates end in -1 seats
        picked[np.arange(k)[None, :] >= short[:, None]] = -1
        out = by_score_within_pages(picked, scores, page)
        for r in range(b):
            for lo in range(0, k, page):
                got, was = out[r, lo : lo + page], picked[r, lo : lo + page]
                assert sorted(got.tolist()) == sorted(was.tolist())
                real = [i for i in got if i >= 0]
                assert got.tolist() == real + [-1] * (len(got) - len(real))
                expect = sorted((i for i in was if i >= 0), key=lambda i: -scores[r, i])
                assert real == expect  # Python's sort is stable: ties keep MMR order
