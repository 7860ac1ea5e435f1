"""``streamrec replay --finetune-every N``: the stream protocol with the fine-tuning side job in
the loop (``stream_app.replay.refresh``) on a real tower-v2 version (tiny random BERT, tiny
world): rounds see only the events before the chunk they precede, a round that passes swaps
the model in without losing any user's state or the popularity counts, a refused one changes
nothing, the user's registry is never written, and the real round (``run_round``) runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas.reports import RoundResult
from schemas.settings import Settings
from stream_app.core.hooks import Hooks
from stream_app.datagen.jsonl import load_events
from stream_app.registry import Registry, RegistryError
from stream_app.replay.runner import ReplayError, run_replay
from tests.model_versions import train_registry

pytestmark = pytest.mark.slow

SCORED = ("hr@10", "ndcg@10", "examples", "auc_click", "auc_purchase", "ild@10")


@pytest.fixture(scope="module")
def tower(tmp_path_factory: pytest.TempPathFactory, tiny_world: Path, tiny_bert: str) -> Path:
    root = tmp_path_factory.mktemp("refresh") / "registry"
    return train_registry(root, tiny_world, model_path=tiny_bert, engine="tower-v2", epochs=2)


def _settings(registry: Path, tiny_bert: str, **replay: Any) -> Settings:
    base = {"ks": (10,), "baselines": ("cooc",), "ablations": (), "max_users": 60, **replay}
    return Settings().with_overrides(
        registry_dir=str(registry),
        model_path=tiny_bert,
        **{"finetune.epochs": 1, "finetune.patience": 1},
        **{f"replay.{k}": v for k, v in base.items()},
    )


class CopyRounds:
    """A round that publishes an identical copy of CURRENT (or refuses): the swap path with a
    model whose lists must not change. Records what each round was given."""

    def __init__(self, decision: str = "published") -> None:
        self.decision = decision
        self.calls: list[tuple[int, float, str]] = []

    def __call__(
        self, opts: Settings, reg: Registry, items: list[Any], events: list[Any], rid: str,
        hooks: Hooks,
    ) -> RoundResult:  # fmt: skip
        self.calls.append((len(events), max(e.ts.timestamp() for e in events), rid))
        parent = reg.require_current()
        version = reg.copy_version(parent, make_current=self.decision == "published")
        return RoundResult(
            decision=self.decision, reason="test", version=version, parent=parent, seconds=0.0
        )


def _scores(out: Any) -> dict[str, dict[str, float]]:
    return {n: {m: row[m] for m in SCORED if m in row} for n, row in out.systems.items()}


def test_swaps_to_an_identical_model_change_no_list_and_keep_the_users_registry(
    tower: Path, tiny_world: Path, tiny_bert: str
):
    items, events = tiny_world / "items.jsonl", tiny_world / "events.jsonl"
    before = Registry(tower).versions()
    plain = run_replay(_settings(tower, tiny_bert), items, events)
    rounds = CopyRounds()
    fresh = run_replay(
        _settings(tower, tiny_bert, finetune_every=40), items, events, train_round=rounds
    )
    assert Registry(tower).versions() == before  # rounds publish into a scratch registry
    n = len(rounds.calls)
    assert n >= 2 and fresh.counts["finetune_rounds"] == fresh.counts["finetune_published"] == n
    assert _scores(fresh) == _scores(plain)  # same model, same states, same popularity
    # each round trains on strictly more events, all before the first event it is used for
    sizes = [c[0] for c in rounds.calls]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1] < len(load_events(events))
    scored_from = sorted(e.ts.timestamp() for e in load_events(events))[
        plain.counts["warmup_events"]
    ]
    assert all(c[1] >= scored_from for c in rounds.calls[1:])  # streamed events are in
    assert "finetune_s" in fresh.timing


def test_a_refused_round_swaps_nothing_and_a_bad_option_is_refused(
    tower: Path, tiny_world: Path, tiny_bert: str
):
    items, events = tiny_world / "items.jsonl", tiny_world / "events.jsonl"
    rounds = CopyRounds("refused")
    out = run_replay(
        _settings(tower, tiny_bert, finetune_every=40), items, events, train_round=rounds
    )
    assert out.counts["finetune_rounds"] == len(rounds.calls) >= 2
    assert out.counts["finetune_published"] == 0 and out.counts["finetune_versions"] == "-"
    with pytest.raises(ReplayError, match="--finetune-every: needs --protocol stream"):
        run_replay(_settings(tower, tiny_bert, finetune_every=40), items, events)  # no trainer
    with pytest.raises(ReplayError, match="--finetune-every"):
        run_replay(
            _settings(tower, tiny_bert, finetune_every=40, protocol="loo"), items, events,
            train_round=rounds,
        )  # fmt: skip


def test_import_version_copies_a_version_and_refuses_a_taken_name(tower: Path, tmp_path: Path):
    src = Registry(tower)
    version = src.require_current()
    scratch = Registry(tmp_path / "scratch")
    assert scratch.import_version(src.path(version)) == version
    assert scratch.require_current() == version and scratch.verify(version) == []
    with pytest.raises(RegistryError, match="not a version name free"):
        scratch.import_version(src.path(version))


def test_the_real_round_trains_on_the_stream_and_is_logged(
    tower: Path, tiny_world: Path, tiny_bert: str
):
    from stream_app.cli.replay import _round_trainer

    settings = _settings(tower, tiny_bert, finetune_every=150)
    out = run_replay(
        settings, tiny_world / "items.jsonl", tiny_world / "events.jsonl",
        train_round=_round_trainer(settings),
    )  # fmt: skip
    assert out.counts["finetune_rounds"] >= 1
    published = out.counts["finetune_published"]
    assert 0 <= published <= out.counts["finetune_rounds"]
    if published:
        assert out.counts["finetune_versions"].startswith("v")
    assert out.timing["finetune_s"] > 0
    assert 0.0 <= out.systems["streamrec"]["ndcg@10"] <= 1.0
