"""Ground truth of a synthetic world (``streamrec generate`` writes ``world.json`` next to the
events): each user's real interests (topics, before and after the world's drift) and each
item's topics. With it, replay measures what the lists should achieve on such a log:

``true_interest_coverage@K`` = share of the user's real interests (at the event's time) that
the top K covers with at least one item of that topic, averaged over scored examples. Unlike
``interest_coverage`` (the model's own slots), it also applies to baselines and to K=1.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from stream_app.replay.results import SystemResults

WORLD_FILE = "world.json"


class World:
    def __init__(self, doc: dict[str, Any], ids: list[str]) -> None:
        self.drift = datetime.fromisoformat(doc["drift_ts"].replace("Z", "+00:00")).timestamp()
        topics = doc["item_topics"]
        self.item_topics = [frozenset(topics.get(i, ())) for i in ids]
        self.users = {
            u: (
                frozenset(t["topic"] for t in v["before"]),
                frozenset(t["topic"] for t in v["after"]),
            )
            for u, v in doc["users"].items()
        }

    def interests(self, user: str, ts: float) -> frozenset[int]:
        before, after = self.users.get(user, (frozenset(), frozenset()))
        return before if ts < self.drift else after

    def coverage(self, res: SystemResults, k: int) -> float:
        """Mean over examples of |topics in the top k ∩ real interests| / |real interests|."""
        values = []
        for user, ts, items in zip(res.users, res.ts, res.lists, strict=True):
            truth = self.interests(user, ts)
            if not truth:
                continue
            shown: set[int] = set()
            for i in items[:k].tolist():
                shown |= self.item_topics[i]
            values.append(len(shown & truth) / len(truth))
        return float(np.mean(values)) if values else math.nan


def load(events_path: Path, ids: list[str]) -> World | None:
    """The world beside the events file, when it is a synthetic one (else None)."""
    path = Path(events_path).parent / WORLD_FILE
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
        return World(doc, ids)
    except (ValueError, KeyError, TypeError):
        return None
