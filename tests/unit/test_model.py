"""Model unit tests with a tiny random-init BERT (2 layers, hidden 32), plus the real MiniLM."""

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from model_export.data import Examples, ItemSpace  # noqa: E402
from model_export.encoder import (  # noqa: E402
    encode_texts,
    load_encoder,
    parse_mode,
    set_trainable,
)
from model_export.modeling import MultiTaskRanker, RankerConfig  # noqa: E402
from model_export.train import train_ranker  # noqa: E402
from model_export.transfer import tune_encoder  # noqa: E402
from schemas.settings import TrainingSettings  # noqa: E402

CFG = RankerConfig(
    text_dim=16, d=8, hidden=8, k=3, recent_len=4, n_items=30, dropout=0.0, id_dropout=0.0
)


def inputs(b=2, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    slots = torch.nn.functional.normalize(torch.randn(b, CFG.k, CFG.text_dim, generator=g), dim=-1)
    strengths = torch.tensor([[2.0, 1.0, 0.0]] * b)
    recent = torch.randn(b, CFG.recent_len, CFG.feat_dim, generator=g)
    mask = torch.tensor([[1.0, 1.0, 0.0, 0.0]] * b)
    cand = torch.randn(b, n, CFG.feat_dim, generator=g)
    return slots, strengths, recent, mask, cand


def test_ranker_shapes_masks_and_esmm():
    model = MultiTaskRanker(CFG).eval()
    out = model(*inputs())
    assert out.click_logits.shape == (2, 5) and out.cvr_logits.shape == (2, 5)
    assert out.attn.shape == (2, 5, CFG.k + CFG.recent_len)
    attn = out.attn.detach()
    assert torch.allclose(attn.sum(-1), torch.ones(2, 5), atol=1e-5)
    assert attn[..., 2].max() < 1e-6  # empty slot (strength 0) gets no attention
    assert attn[..., CFG.k + 2 :].max() < 1e-6  # padded recent items get none either
    assert (out.p_purchase <= out.p_click + 1e-7).all()  # ESMM: buy implies click
    # changing a masked recent item changes nothing
    s, st, r, m, c = inputs()
    r2 = r.clone()
    r2[:, 3] += 100.0
    assert torch.allclose(model(s, st, r, m, c).click_logits, model(s, st, r2, m, c).click_logits)


def test_loss_is_weighted_sum_and_learns():
    torch.manual_seed(0)
    model = MultiTaskRanker(CFG)
    s, st, r, m, c = inputs(b=8, n=6)
    labels = {"click": torch.zeros(8, 6), "purchase": torch.zeros(8, 6)}
    labels["click"][:, 0] = 1
    labels["purchase"][:4, 0] = 1
    out = model(s, st, r, m, c, labels=labels)
    parts = out.losses
    expected = (
        sum(CFG.task_weights[t] * parts[t] for t in CFG.tasks)
        + CFG.listwise_weight * parts["listwise"]
        + CFG.retrieval_weight * parts["retrieval"]
    )
    assert torch.isclose(out.loss, expected)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = float(out.loss.detach())
    for _ in range(60):
        loss = model(s, st, r, m, c, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first
    assert model.eval()(s, st, r, m, c).click_logits.argmax(-1).eq(0).all()


def toy_examples(n_ex: int, seed: int) -> tuple[ItemSpace, Examples]:
    """Item j+1 follows item j: an id pattern only training can find (slots are noise)."""
    vecs = np.random.default_rng(0).normal(size=(CFG.n_items + 1, CFG.text_dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    space = ItemSpace([f"i{j}" for j in range(CFG.n_items)], vecs, vecs)
    target = rng.integers(1, CFG.n_items + 1, n_ex).astype(np.int32)
    recent = np.zeros((n_ex, CFG.recent_len), np.int32)
    recent[:, 0] = np.maximum(1, (target + 1) % (CFG.n_items + 1))  # next item follows previous
    slots = np.repeat(vecs[rng.integers(1, CFG.n_items + 1, n_ex)][:, None, :], CFG.k, 1)
    slots = slots.astype(np.float16)
    ex = Examples(
        slots,
        np.tile([1.0, 0, 0], (n_ex, 1)).astype(np.float32),
        recent,
        target,
        np.zeros(n_ex, np.uint8),
        np.arange(n_ex, dtype=np.int32),
        np.arange(n_ex, dtype=np.float64),
        [np.zeros(0, np.int32)] * n_ex,
    )
    return space, ex


def test_training_improves_and_early_stopping_stops():
    space, train = toy_examples(600, 0)
    _, valid = toy_examples(100, 1)
    res = train_ranker(
        CFG,
        TrainingSettings(epochs=8, batch_size=64, negatives=8, patience=2, lr=5e-3),
        space,
        train,
        valid,
    )
    scores = [row.valid["ndcg@10"] for row in res.history]
    assert max(scores) > scores[0] and max(scores) > 0.3
    # lr = 0: validation can never improve after epoch 1 -> stops after 1 + patience epochs
    frozen = train_ranker(
        CFG,
        TrainingSettings(epochs=10, batch_size=64, negatives=8, patience=2, lr=0.0),
        space,
        train,
        valid,
    )
    assert len(frozen.history) == 3 and frozen.stopped_early and frozen.best_epoch == 1


def snapshot(module: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


@pytest.mark.parametrize("mode", ["frozen", "top-1", "full"])
def test_freeze_modes_really_freeze(tiny_bert: str, mode: str):
    enc, tok = load_encoder(tiny_bert)
    before = snapshot(enc)
    texts = [f"item number {i} about topic {i % 3}" for i in range(12)]
    pairs = np.array([[i, (i + 3) % 12] for i in range(12)])
    stats = tune_encoder(enc, tok, texts, pairs, mode, steps=3, batch_size=6, lr=1e-2)
    after = snapshot(enc)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    top = "backbone.encoder.layer.1."
    if mode == "frozen":
        assert changed == set() and stats.trainable_params == 0
    elif mode == "top-1":
        assert changed and all(k.startswith(top) for k in changed)
        assert not any(k.startswith("backbone.embeddings") for k in changed)
    else:
        assert any(k.startswith("backbone.embeddings") for k in changed)
        assert any(k.startswith("backbone.encoder.layer.0.") for k in changed)


def test_mode_parsing_names_the_bad_value():
    assert parse_mode("frozen") == 0 and parse_mode("top-2") == 2 and parse_mode("full") is None
    with pytest.raises(ValueError, match="encoder_mode: expected .* got 'top-x'"):
        parse_mode("top-x")


def test_tiny_bert_trainable_counts(tiny_bert: str):
    enc, _ = load_encoder(tiny_bert)
    n_top = set_trainable(enc, "top-1")
    n_full = set_trainable(enc, "full")
    assert 0 < n_top < n_full and set_trainable(enc, "frozen") == 0


@pytest.mark.model
def test_real_minilm_texts_sharing_words_embed_closer():
    enc, tok = load_encoder(None)
    v = encode_texts(
        enc,
        tok,
        [
            "lightweight hiking backpack for trail trips",
            "trail hiking boots, waterproof",
            "cast iron skillet for the kitchen",
            "jazz piano vinyl record",
        ],
    )
    assert v.shape == (4, 384)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sims = v @ v.T
    assert sims[0, 1] > sims[0, 2] + 0.15 and sims[0, 1] > sims[0, 3] + 0.15


def test_bad_model_path_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ValueError, match="model_path .*expected a local BERT-family model"):
        load_encoder(str(tmp_path / "nope"))


def test_config_roundtrip():
    cfg = RankerConfig(n_items=5, use_text=False)
    assert RankerConfig.from_dict(json.loads(cfg.to_json())) == cfg
