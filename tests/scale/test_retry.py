"""Retries of ARM calls inside a tick: Retry-After honoured up to its cap, bounded backoff,
a bounded number of attempts and a budget, and no retry of what cannot succeed."""

from __future__ import annotations

from shared.scale.arm import ArmError, AzureArmGateway
from shared.scale.retry import RetryPolicy
from tests.support.fake_arm import FakeArm
from tests.support.ticks import FAST, MemoryGateway, SleepRecorder, make_settings, tick, writes


async def test_429_waits_for_retry_after_then_succeeds(
    fake: FakeArm, gateway: AzureArmGateway
) -> None:
    fake.fail(429, method="PATCH", retry_after="7")
    sleep = SleepRecorder()
    report = await tick(make_settings(), gateway, sleep=sleep)
    assert report.outcome == "applied"
    assert sleep.delays == [7.0]
    assert len(fake.calls("PATCH", "/config/web")) == 2


async def test_retry_after_beyond_the_cap_is_not_waited_for(
    fake: FakeArm, gateway: AzureArmGateway
) -> None:
    fake.fail(429, method="PATCH", retry_after="3600")
    sleep = SleepRecorder()
    report = await tick(make_settings(), gateway, sleep=sleep)
    assert report.outcome == "failed"
    assert sleep.delays == []
    assert "(429)" in report.errors[0]


async def test_500_is_retried_with_bounded_backoff(fake: FakeArm, gateway: AzureArmGateway) -> None:
    fake.fail(500, method="GET", path_contains="/config/web", times=2)
    sleep = SleepRecorder()
    report = await tick(make_settings(), gateway, sleep=sleep)
    assert report.outcome == "applied"
    assert len(fake.calls("GET", "/config/web")) == 3
    assert len(sleep.delays) == 2
    assert all(0 < d <= FAST.backoff_max for d in sleep.delays)


async def test_persistent_500_gives_up_after_the_attempts(
    fake: FakeArm, gateway: AzureArmGateway
) -> None:
    fake.fail(500, method="GET", path_contains="/config/web", times=10)
    report = await tick(make_settings(), gateway)
    assert report.outcome == "failed"
    assert len(fake.calls("GET", "/config/web")) == FAST.attempts
    assert writes(fake) == []


async def test_400_is_not_retried(fake: FakeArm, gateway: AzureArmGateway) -> None:
    fake.fail(400, method="PATCH")
    sleep = SleepRecorder()
    report = await tick(make_settings(), gateway, sleep=sleep)
    assert report.outcome == "failed"
    assert sleep.delays == [] and len(fake.calls("PATCH")) == 1


async def test_budget_stops_retrying_before_the_timer_period() -> None:
    gw = MemoryGateway()
    gw.failures["get_site_config"] = [ArmError("busy", status=503) for _ in range(5)]
    sleep = SleepRecorder()
    policy = RetryPolicy(attempts=10, backoff_base=5, backoff_max=5, budget_seconds=1)
    report = await tick(make_settings(), gw, sleep=sleep, retry=policy)
    assert report.outcome == "failed"
    assert sleep.delays == []  # the first wait would already pass the budget
