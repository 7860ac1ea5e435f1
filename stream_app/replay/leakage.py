"""Manifest checks: refuse a model whose training data contains the targets replay is about to
evaluate.

- ``loo``: the targets are each user's last interaction. Only a model trained with
  ``--split loo`` (``training.data.split``) on the SAME events file
  (``training.data.events_sha256``) held exactly those out; any other model (a ``time``
  split, another file) may have trained on them.
- ``stream``: the targets are every event from the first scored one on. The model's last
  training target (``training.data.train_until``) must not be later than that event.

Both refusals say which field was read, what was expected and what was found.
"""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.manifest import Manifest


class LeakageError(ValueError):
    """The model's training data overlaps the evaluation targets."""


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def check_loo(manifest: Manifest, events_sha256: str) -> None:
    """Raise LeakageError unless the model was trained with the LOO split on this events file."""
    version, data = manifest.version, manifest.training.data
    if data.split != "loo":
        msg = (
            f"refusing model {version} for --protocol loo: its manifest says training.data.split="
            f"{data.split!r}, expected 'loo'. A {data.split!r}-split model trained on "
            "interactions that LOO holds out as test targets (each user's last item); train one "
            "with `streamrec train --split loo` on the same events file"
        )
        raise LeakageError(msg)
    trained_sha = data.events_sha256
    if trained_sha != events_sha256:
        shown = f"{trained_sha[:12]}…" if trained_sha is not None else repr(trained_sha)
        msg = (
            f"refusing model {version} for --protocol loo: training.data.events_sha256 is "
            f"{shown}, expected {events_sha256[:12]}… (the events file being replayed). A "
            "LOO model trained on another file may have seen these users' test items as "
            "training targets"
        )
        raise LeakageError(msg)


def check_stream(manifest: Manifest, first_scored_ts: float) -> None:
    """Raise LeakageError unless the model's training ended at or before the first scored event."""
    version, until = manifest.version, manifest.training.data.train_until
    if until is None:
        msg = (
            f"refusing model {version} for --protocol stream: its manifest has no "
            f"training.data.train_until (got {until!r}), so replay cannot prove the scored "
            "events were not training targets"
        )
        raise LeakageError(msg)
    if until > first_scored_ts:
        msg = (
            f"refusing model {version} for --protocol stream: training.data.train_until is "
            f"{_iso(until)}, after the first scored event ({_iso(first_scored_ts)}); the "
            "model trained on events it would be evaluated on. Raise --warmup-frac or train "
            "on an earlier window"
        )
        raise LeakageError(msg)


def check(manifest: Manifest, protocol: str, *, events_sha256: str, first_scored_ts: float) -> None:
    if protocol == "loo":
        check_loo(manifest, events_sha256)
    elif protocol == "stream":
        check_stream(manifest, first_scored_ts)
    else:
        msg = f"protocol: expected 'stream' or 'loo', got {protocol!r}"
        raise ValueError(msg)
