"""The ONNX contract in one place: names, dtypes and dynamic axes of every exported graph.

Torch-free: the exporter and the worker's sessions both read it (sessions check names and
dtypes at load)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name
    axes: tuple[str | int, ...]  # str = dynamic axis name
    optional: bool = False  # added to the contract later: graphs exported before may lack it


@dataclass(frozen=True)
class GraphSpec:
    file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {
            t.name: {i: a for i, a in enumerate(t.axes) if isinstance(a, str)}
            for t in (*self.inputs, *self.outputs)
        }

    def required(self) -> GraphSpec:
        """The contract without its optional tensors (what an older graph has)."""
        return GraphSpec(
            self.file,
            tuple(t for t in self.inputs if not t.optional),
            tuple(t for t in self.outputs if not t.optional),
        )

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


ENCODER = GraphSpec(
    "encoder.onnx",
    inputs=(
        TensorSpec("input_ids", "int64", ("batch", "seq")),
        TensorSpec("attention_mask", "int64", ("batch", "seq")),
    ),
    outputs=(TensorSpec("sentence_embedding", "float32", ("batch", "dim")),),
)

ITEM_TOWER = GraphSpec(
    "item_tower.onnx",
    inputs=(
        TensorSpec("text_vec", "float32", ("items", "text_dim")),
        TensorSpec("id_index", "int64", ("items",)),
        TensorSpec("item_num", "float32", ("items", "num_features")),
    ),
    outputs=(TensorSpec("item_feats", "float32", ("items", "feat_dim")),),
)

RANKER = GraphSpec(
    "ranker.onnx",
    inputs=(
        TensorSpec("slots", "float32", ("batch", "k", "text_dim")),
        TensorSpec("strengths", "float32", ("batch", "k")),
        TensorSpec("recent", "float32", ("batch", "recent", "feat_dim")),
        TensorSpec("recent_mask", "float32", ("batch", "recent")),
        TensorSpec("cand", "float32", ("batch", "cands", "feat_dim")),
        TensorSpec("cooc", "float32", ("batch", "cands")),
    ),
    outputs=(
        TensorSpec("p_click", "float32", ("batch", "cands")),
        TensorSpec("p_purchase", "float32", ("batch", "cands")),
        TensorSpec("attn", "float32", ("batch", "cands", "memory")),
    ),
)

# -- engine tower-v2 (a learned multi-interest user tower; ``model_export.tower``) ------------
# Its item side is exported under the ITEM_TOWER contract above (same inputs, same output
# name) with the feature layout of ``tower_feat_slices``: the first ``d`` features are the
# item's retrieval vector (text adaptor + id embedding; text alone for id 0), then its click
# and purchase biases.
USER_TOWER = GraphSpec(
    "user_tower.onnx",
    inputs=(
        TensorSpec("recent", "float32", ("batch", "recent", "feat_dim")),  # newest first
        TensorSpec("recent_mask", "float32", ("batch", "recent")),
        TensorSpec("recent_kind", "int64", ("batch", "recent")),  # 0 click, 1 purchase
        TensorSpec("recent_age", "float32", ("batch", "recent")),  # hours before the newest
    ),
    outputs=(
        TensorSpec("interests", "float32", ("batch", "k", "d")),
        TensorSpec("weights", "float32", ("batch", "k")),  # softmax over k
        TensorSpec("tower_attn", "float32", ("batch", "k", "recent")),  # per interest, sums 1
        # log((purchases + 1) / (clicks + 1)) over the recent items: the purchase head's input
        TensorSpec("buy_prior", "float32", ("batch",), optional=True),
    ),
)

HEADS = GraphSpec(
    "heads.onnx",
    inputs=(
        TensorSpec("interests", "float32", ("batch", "k", "d")),
        TensorSpec("weights", "float32", ("batch", "k")),
        TensorSpec("cand", "float32", ("batch", "cands", "feat_dim")),
        TensorSpec("cooc", "float32", ("batch", "cands")),
        TensorSpec("buy_prior", "float32", ("batch",), optional=True),  # USER_TOWER's
    ),
    outputs=(
        TensorSpec("p_click", "float32", ("batch", "cands")),
        TensorSpec("p_purchase", "float32", ("batch", "cands")),
        TensorSpec("match", "float32", ("batch", "cands", "k")),  # cand . interest_k
    ),
)

GRAPHS = {g.file: g for g in (ENCODER, ITEM_TOWER, RANKER, USER_TOWER, HEADS)}
PARITY_ATOL = 1e-4


def feat_slices(d: int, hidden: int) -> dict[str, slice]:
    """Layout of the item-tower features: [r | q | c | t | bias | buy_bias] (modeling.ItemTower)."""
    end = 3 * d + hidden
    return {
        "r": slice(0, d),
        "q": slice(d, 2 * d),
        "c": slice(2 * d, 2 * d + hidden),
        "t": slice(2 * d + hidden, end),
        "bias": slice(end, end + 1),
        "buy_bias": slice(end + 1, end + 2),
    }


def tower_feat_slices(d: int) -> dict[str, slice]:
    """Layout of the tower-v2 item features: [v (d) | bias | buy_bias] (feat_dim = d + 2)."""
    return {"v": slice(0, d), "bias": slice(d, d + 1), "buy_bias": slice(d + 1, d + 2)}
