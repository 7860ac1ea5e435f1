"""The list last published for each user, as the exact bytes that went to the recommendations
topic (``GET /recommendations/{user_id}``). In memory, least recently published users dropped
first; a worker that starts (or takes a partition over) knows a user's list from that user's
next event on."""

from __future__ import annotations

from collections import OrderedDict


class LatestLists:
    def __init__(self, max_users: int) -> None:
        if max_users < 1:
            msg = f"max_users: expected >= 1, got {max_users}"
            raise ValueError(msg)
        self.max_users = max_users
        self._lists: OrderedDict[str, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._lists)

    def put(self, user_id: str, published: bytes) -> None:
        """Called once the broker has acked ``published`` (a Recommendation's JSON)."""
        self._lists.pop(user_id, None)
        self._lists[user_id] = published
        if len(self._lists) > self.max_users:
            self._lists.popitem(last=False)

    def get(self, user_id: str) -> bytes | None:
        return self._lists.get(user_id)
