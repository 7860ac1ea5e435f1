import numpy as np

from stream_app.core.baselines import CoOccurrence
from stream_app.core.covisit import CoVisit


def test_scores_equal_the_item_knn_baseline_restricted_to_the_top_neighbours():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 40, rng.integers(2, 30)) for _ in range(200)]
    cv = CoVisit.fit(seqs, 39, window=5, top=39)  # top = everything: no truncation
    co = CoOccurrence(40, window=5).fit(seqs)
    recent = np.array([[5, 9, 3, 0, 0], [0, 0, 0, 0, 0], [7, 7, 2, 11, 30]])
    cand = np.tile(np.arange(1, 40), (3, 1))
    got = cv.scores(recent, cand)
    for b in range(3):
        hist = recent[b][recent[b] > 0][::-1]  # oldest .. newest, as the baseline takes it
        expected = co.scores(hist)[1:] if hist.size else np.zeros(39)
        assert np.allclose(got[b], expected, atol=1e-5)


def test_truncation_keeps_the_strongest_and_neighbours_exclude_padding():
    seqs = [np.array([1, 2]), np.array([1, 2]), np.array([1, 3])]
    cv = CoVisit.fit(seqs, 3, window=1, top=1)
    assert cv.nbr[1, 0] == 2  # 1-2 co-occur twice, 1-3 once
    assert cv.neighbours(np.array([[1, 0]]), 1).tolist() == [[2, 0]]
    s = cv.scores(np.array([[1]]), np.array([[2, 3, 0]]))
    assert s[0, 0] > 0 and s[0, 1] == 0 and s[0, 2] == 0
