"""The worker benchmark's target table (``bench/worker_bench.py``): each target judged from the
run's own figures, met exactly at the limit, phases the run did not have left out."""

from __future__ import annotations

from typing import Any

from bench.worker_bench import target_checks


def result(events_per_s: float, cpu: float, p99: float | None, swap_ratio: float | None) -> Any:
    rows: list[dict[str, Any]] = [
        {"phase": "max (backlog)", "events_per_s": events_per_s, "cpu_ms_per_event": cpu}
    ]
    if p99 is not None:
        rows.append(
            {"phase": "1,000 ev/s", "target_rate": 1000, "events_per_s": 990, "p99_ms": p99}
        )
    out: dict[str, Any] = {"rows": rows, "ratio_to_ceiling": events_per_s / 40_000}
    if swap_ratio is not None:
        out["swap"] = {"all_workers_new_s": 1.5, "p99_ratio": swap_ratio}
    return out


def verdicts(r: Any) -> list[bool]:
    return [ok for _, _, ok in target_checks(r)]


def test_todays_figures_are_not_met_and_the_targets_are_met_at_their_limits():
    assert verdicts(result(1156, 0.87, 293, 2.02)) == [False, False, False, False, True, False]
    assert verdicts(result(3000, 0.3, 50, 2.0)) == [True, True, True, True, True, True]


def test_phases_the_run_did_not_have_are_left_out():
    checks = target_checks(result(1156, 0.87, None, None))
    assert [name for name, _, _ in checks] == [
        ">= 3,000 events/s (max)",
        ">= 0.05 of the bare loop",
        "<= 0.3 ms CPU per event (max)",
    ]
    assert checks[1][1] == "0.029"  # measured figures as printed
