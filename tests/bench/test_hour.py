"""The hour's pieces: callers who return, the process sampler, and the slice judgement."""

from __future__ import annotations

import os
import socket
from collections import Counter
from typing import Any

import pytest

from bench.hour import judge, slice_rows
from bench.population import Population
from bench.sampling import process_sample
from bench.traffic import Profile, build_schedule


def flat_profile(seconds: float, rate: float) -> Profile:
    return Profile.spike(rate, 1.0, lead=0, ramp=0, hold=seconds, fall=0, tail=0)


def test_a_population_too_small_for_the_profile_is_refused_without_returning_callers() -> None:
    with pytest.raises(ValueError, match="too small"):
        build_schedule(flat_profile(20, 50), Population.build(100))


def test_returning_callers_start_again_once_every_customer_has_called() -> None:
    population = Population.build(100)
    schedule = build_schedule(flat_profile(20, 50), population, callers_return=True)
    kinds = Counter(a.kind for a in schedule)
    assert kinds["new"] == 100  # every customer once before anyone returns
    assert kinds["return"] > 0
    first_return = next(i for i, a in enumerate(schedule) if a.kind == "return")
    assert all(a.kind != "new" for a in schedule[first_return:])


def test_a_process_sample_reads_this_processs_memory_and_descriptors() -> None:
    sample = process_sample(os.getpid())
    assert sample is not None
    assert sample["rssMb"] > 10
    assert sample["fds"] >= 3
    with open(os.devnull) as extra:  # noqa: F841 - one descriptor more while it is open
        assert process_sample(os.getpid())["fds"] == sample["fds"] + 1  # type: ignore[index]


def test_a_process_sample_counts_its_sockets_by_the_port_they_use() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            with accepted:
                sample = process_sample(os.getpid(), {"ours": port, "nobody": 1})
                assert sample is not None
                # The listener, the client's end and the accepted end.
                assert sample["sockets"] == {"ours": 3, "nobody": 0}
                assert client.fileno() >= 0


def test_a_gone_process_has_no_sample() -> None:
    assert process_sample(2**22 + 1) is None


def variant(slices: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    """A spike result with one entry per slice of 300 s (slice 0 the climb)."""
    timeline: dict[str, list[Any]] = {
        "t": [300.0 * i for i in range(len(slices))],
        "offered": [1500] * len(slices),
        "p50Ms": [s.get("p50", 10.0) for s in slices],
        "p99Ms": [s.get("p99", 80.0) for s in slices],
        "maxMs": [s.get("max", 200.0) for s in slices],
        "dbReads": [s.get("reads", 60_000) for s in slices],
        "src_cache": [500] * len(slices),
        "src_database": [1000] * len(slices),
        "src_stale": [0] * len(slices),
        "src_degraded": [0] * len(slices),
        "src_none": [0] * len(slices),
        "src_error": [0] * len(slices),
    }
    samples = [
        {
            "t": 300.0 * (i + 1),
            "workers": [
                {
                    "pid": 1,
                    "rssMb": s.get("rss", 75.0),
                    "fds": s.get("fds", 20),
                    "sockets": {"redis": 4, "http": 9, "table": 2},
                }
            ],
            "redis": {"usedMemoryMb": 50.0, "keys": 1000 * i},
        }
        for i, s in enumerate(slices)
    ]
    return {
        "slices": timeline,
        "samples": samples,
        "withinDeadlinePctOfSent": 100.0,
        "status5xx": 0,
        "timeouts": 0,
        "connectionErrors": 0,
        **overrides,
    }


HOLD = (10.0, 10.0 + 300 * 5)


def test_a_steady_hour_meets_every_check_and_the_climb_is_not_judged() -> None:
    run = variant([{"p99": 500.0}, {}, {}, {}, {}])
    rows = slice_rows(run, 300.0, HOLD)
    assert [r["inHold"] for r in rows] == [False, True, True, True, True]
    assert rows[1]["dbReadsPerS"] == 200.0
    assert rows[1]["sourcesPct"]["database"] == pytest.approx(66.7)
    assert rows[2]["redisKeys"] == 2000
    assert rows[2]["workerSockets"] == {"redis": 4, "http": 9, "table": 2}
    verdict = judge(rows, run)
    assert verdict["met"], verdict


@pytest.mark.parametrize(
    ("drift", "check"),
    [
        ({"p99": 90.0}, "p99Within10Pct"),
        ({"reads": 50_000}, "dbReadsWithin10Pct"),
        ({"rss": 84.0}, "rssWithin10Pct"),
        ({"fds": 30}, "fdsFlat"),
    ],
)
def test_a_slice_more_than_10_pct_off_the_second_fails_its_check(
    drift: dict[str, float], check: str
) -> None:
    run = variant([{}, {}, {}, drift, {}])
    verdict = judge(slice_rows(run, 300.0, HOLD), run)
    assert verdict["checks"][check] is False
    assert not verdict["met"]
    others = {k: v for k, v in verdict["checks"].items() if k != check}
    assert all(others.values()), others


def test_a_late_dip_or_a_5xx_fails_the_hour() -> None:
    late = variant([{}, {}, {}], withinDeadlinePctOfSent=99.99)
    failed = variant([{}, {}, {}], status5xx=1)
    assert judge(slice_rows(late, 300.0, HOLD), late)["checks"]["allWithinDeadline"] is False
    assert judge(slice_rows(failed, 300.0, HOLD), failed)["checks"]["zero5xx"] is False
