"""bench.metrics.recovery: when a drill's answers came back, and whether they stayed."""

from __future__ import annotations

from bench.driver import Driven
from bench.metrics import recovery
from bench.traffic import Arrival


def _run(rates: list[tuple[float, float, str]]) -> tuple[Driven, list[Arrival]]:
    """Arrivals at 100/s from 0 to 20 s; ``rates`` gives (from, to, source) stretches,
    and every other arrival is answered degraded."""
    schedule = [Arrival(i / 100, "spike", "new", b"") for i in range(2000)]
    run = Driven(started=0.0)
    for arrival in schedule:
        source = next((s for lo, hi, s in rates if lo <= arrival.t < hi), "degraded")
        run.status.append(200)
        run.source.append(source)
    return run, schedule


def test_recovery_is_the_first_window_back_at_the_share_and_it_must_hold() -> None:
    # Good answers before the fault (5-10 s), none during it (10-12 s), back at 14 s.
    run, schedule = _run([(0, 10, "database"), (14, 20, "cache")])
    rec = recovery(run, schedule, (10.0, 12.0), spike_start=5.0, spike_end=20.0)
    assert rec["goodPerSBefore"] == 100.0 and rec["goodPerSDuring"] == 0.0
    # The first 1 s window from 12 s with 80 good answers (80% of 100/s) starts at 13.8 s.
    assert rec["recoverySeconds"] == 1.8
    assert rec["firstCacheAfterS"] == 2.0 and rec["firstDatabaseAfterS"] is None
    # Held: from the end of that window (14.8 s) to the end of the peak, all good.
    assert rec["goodPerSAfter"] == 100.0


def test_a_single_good_window_is_not_a_held_recovery() -> None:
    # Back for one second at 14 s, then down to 30% of the rate for the rest of the peak.
    rates: list[tuple[float, float, str]] = [(0, 10, "database"), (14, 15, "database")]
    rates += [(15 + k, 15 + k + 0.3, "database") for k in range(5)]
    run, schedule = _run(rates)
    rec = recovery(run, schedule, (10.0, 12.0), spike_start=5.0, spike_end=20.0)
    assert rec["recoverySeconds"] is not None
    assert rec["goodPerSAfter"] < 0.8 * rec["goodPerSBefore"]
