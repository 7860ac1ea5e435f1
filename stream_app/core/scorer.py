"""What the engine asks of a model version: the ``Scorer`` protocol and its output types.

The core never loads a model. ``stream_app.serving.ServingModel`` implements this protocol with
ONNX Runtime for one registry version; the unit tests implement it with a deterministic numpy
fake. Keeping the engine's view of a model this small is what lets a new engine (another
model family) bring its own scorer without touching the worker, replay or training code.

Version 1 of the contract (the multi-interest ranker), extended by tower-v2:

- ``tower``: (tower-v2) K learned interest vectors and weights from the recent items; the
  rule-built slots of ranker-v1 are not used then;

- ``queries``: retrieval query vectors from the interest slots and the newest item;
- ``slot_match``: how well each candidate's content matches each interest slot;
- ``score``: the multi-task ranker (p_click, p_purchase and its attention weights) over the
  candidates of a batch of users.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from stream_app.core.covisit import CoVisit


@dataclass(frozen=True)
class RankerOut:
    """Ranker outputs for a batch of users [B] and their candidates [N]."""

    p_click: np.ndarray  # [B, N]
    p_purchase: np.ndarray  # [B, N]
    attn: np.ndarray  # [B, N, K + L]: attention over the K slots, then the L recent items

    def subset(self, idx: np.ndarray) -> RankerOut:
        return RankerOut(self.p_click[idx], self.p_purchase[idx], self.attn[idx])

    @property
    def p_buy_given_interaction(self) -> np.ndarray:
        """[B, N] ``purchase_given_interaction`` of every candidate."""
        return purchase_given_interaction(self.p_click, self.p_purchase)


def purchase_given_interaction(p_click: np.ndarray, p_purchase: np.ndarray) -> np.ndarray:
    """P(purchase | interaction) = p_purchase / p_click (both engines factorise p_purchase =
    p_click * p(purchase | click), ESMM): the score that says whether a user who interacts with
    an item buys it, which the replay's purchase AUC ranks (bought vs only clicked targets)."""
    return p_purchase / np.maximum(p_click, 1e-30)


@dataclass(frozen=True)
class TowerOut:
    """A learned user tower's outputs for a batch of users [B] (engine tower-v2)."""

    interests: np.ndarray  # [B, K, d] unit interest vectors (retrieval queries)
    weights: np.ndarray  # [B, K] softmax over the K interests
    attn: np.ndarray  # [B, K, L] each interest's attention over the L recent items
    buy_prior: np.ndarray | None = None  # [B] the purchase head's user input (None: no such input)


class Scorer(Protocol):
    """One model version as the engine sees it (all arrays float32 unless said otherwise)."""

    @property
    def version(self) -> str: ...

    @property
    def space(self) -> str:
        """Id of the vector space the interest slots live in (the pretrained encoder's)."""
        ...

    @property
    def k(self) -> int:
        """Interest slots the version was trained with."""
        ...

    @property
    def recent_len(self) -> int:
        """Recent items the ranker reads (L)."""
        ...

    @property
    def d(self) -> int:
        """Size of the retrieval vectors (the first ``d`` item features)."""
        ...

    @property
    def text_dim(self) -> int:
        """Size of the item text vectors (the interest space)."""
        ...

    @property
    def feat_dim(self) -> int:
        """Size of an item's features (the item tower's output)."""
        ...

    @property
    def id_index(self) -> Mapping[str, int]:
        """Item id -> the version's item index (1..M); unknown items are 0."""
        ...

    @property
    def covisit(self) -> CoVisit | None:
        """The version's co-visitation table over its item index, if it has one."""
        ...

    def tower(
        self,
        recent: np.ndarray,
        recent_mask: np.ndarray,
        recent_kind: np.ndarray,
        recent_age: np.ndarray,
    ) -> TowerOut | None:
        """Learned interests from the recent items [B, L, F] (newest first), their mask
        [B, L], kind [B, L] (0 click, 1 purchase) and age [B, L] (hours before the newest);
        None for an engine whose interest slots are built by rule (ranker-v1). When given,
        the engine uses the interests and weights in place of the state's slots and
        strengths everywhere below."""
        ...

    def queries(
        self, slots: np.ndarray, strengths: np.ndarray, newest: np.ndarray, newest_valid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """slots [B, K, Dt], strengths [B, K], newest item features [B, F], newest_valid [B]
        -> retrieval queries [B, K+1, d] and their validity [B, K+1] (bool)."""
        ...

    def slot_match(self, slots: np.ndarray, cand_feats: np.ndarray) -> np.ndarray | None:
        """[B, N, K] match of each candidate with each slot (None: the version has none)."""
        ...

    def score(
        self,
        slots: np.ndarray,
        strengths: np.ndarray,
        recent: np.ndarray,
        recent_mask: np.ndarray,
        cand: np.ndarray,
        cooc: np.ndarray | None = None,
        buy_prior: np.ndarray | None = None,
    ) -> RankerOut:
        """slots [B, K, Dt], strengths [B, K], recent item features [B, L, F] with their mask
        [B, L], candidate features [B, N, F] (or [1, N, F], shared), co-visitation [B, N],
        the tower's ``TowerOut.buy_prior`` [B] (ignored by an engine without that input)."""
        ...
