"""Names for a user's interests, for people: the categories and words the items behind an
interest share (pure; the read API passes each item's text and categories).

A category or word is shared when at least two of the interest's items have it (each item
counts once); they are ranked by how many items have them, then by first appearance in the
newest-first item list. An interest of one item (or whose items share nothing) is named by
that newest item's own categories and first words. Words are lower-cased letters/digits of
at least three characters without digits (model codes), stop words and the categories' own
words left out.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

_WORD = re.compile(r"[^\W_]{3,}", re.UNICODE)
STOP_WORDS = frozenset(
    """
    the and for with from that this are was were has have had its into onto over under
    about after before than then them they their there these those which while who whom
    what when where why how not but all any can out off our your you his her him she
    one two new more most very also just only other some such own same each both few
    made make makes set use used
    """.split()
)


@dataclass(frozen=True)
class InterestName:
    categories: list[str]
    words: list[str]

    @property
    def label(self) -> str:
        parts = []
        if self.categories:
            parts.append(" / ".join(self.categories))
        if self.words:
            parts.append(", ".join(self.words))
        return " · ".join(parts) if parts else "(unnamed)"


def words_of(text: str, leave_out: frozenset[str] = frozenset()) -> list[str]:
    """Distinct lower-cased words of ``text`` in order of appearance (see module doc)."""
    out: list[str] = []
    for w in _WORD.findall(text.lower()):
        if w in STOP_WORDS or w in leave_out or any(ch.isdigit() for ch in w) or w in out:
            continue
        out.append(w)
    return out


def _ranked(per_item: Sequence[Sequence[str]], min_items: int, limit: int) -> list[str]:
    counts: Counter[str] = Counter()
    first: dict[str, int] = {}
    for values in per_item:
        for v in dict.fromkeys(values):
            counts[v] += 1
            first.setdefault(v, len(first))
    keep = [v for v, n in counts.items() if n >= min_items]
    keep.sort(key=lambda v: (-counts[v], first[v]))
    return keep[:limit]


def name_interest(
    items: Sequence[tuple[str, Sequence[str]]], max_categories: int = 3, max_words: int = 4
) -> InterestName:
    """``items``: (text, categories) of the items behind one interest, newest first."""
    if not items:
        return InterestName([], [])
    cats_per_item = [list(c) for _, c in items]
    category_words = frozenset(w for cats in cats_per_item for c in cats for w in words_of(c))
    words_per_item = [words_of(text, category_words) for text, _ in items]
    cats = _ranked(cats_per_item, 2, max_categories) if len(items) > 1 else []
    words = _ranked(words_per_item, 2, max_words) if len(items) > 1 else []
    if not cats and not words:
        cats = list(dict.fromkeys(cats_per_item[0]))[:max_categories]
        words = words_per_item[0][:max_words]
    return InterestName(cats, words)
