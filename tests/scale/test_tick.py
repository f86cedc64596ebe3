"""The scale tick: through azure-mgmt-web against an HTTPS fake ARM, and its decisions
against an in-memory gateway."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

import hypothesis
import pytest

from shared.scale.arm import ArmError, AzureArmGateway
from shared.scale.schedule import ScheduleError, Surge
from shared.scale.settings import ScaleSettings
from shared.scale.target import Target
from shared.scale.tick import check_schedule, run_tick
from tests.support.fake_arm import FakeArm
from tests.support.schedules import schedule_texts
from tests.support.ticks import (
    APP_ENV,
    FAST,
    NIGHT,
    NOON,
    SCHEDULE,
    TUESDAY_PROMO,
    MemoryGateway,
    make_settings,
    tick,
    writes,
)


async def test_one_tick_sends_exactly_one_patch_and_the_next_sends_none(
    fake: FakeArm, gateway: AzureArmGateway
) -> None:
    fake.state.always_ready = 1  # M; the business-hours window asks N=5
    settings = make_settings()

    first = await tick(settings, gateway)
    assert first.outcome == "applied"
    assert writes(fake) == [("PATCH", "web", {"properties": {"minimumElasticInstanceCount": 5}})]
    assert fake.state.always_ready == 5

    fake.clear()
    second = await tick(settings, gateway)
    assert second.outcome == "unchanged"
    assert writes(fake) == []
    # Reads only: site config and plan (this gateway already knows the plan's name).
    assert [r.method for r in fake.requests] == ["GET", "GET"]


async def test_raising_above_the_plan_max_burst_patches_the_plan_first(
    fake: FakeArm, gateway: AzureArmGateway
) -> None:
    fake.state.max_burst = 10
    report = await tick(make_settings(), gateway, now=TUESDAY_PROMO)
    assert report.outcome == "applied", report.errors
    assert writes(fake) == [
        ("PATCH", "dip-plan", {"properties": {"maximumElasticWorkerCount": 60}}),
        (
            "PATCH",
            "web",
            {"properties": {"minimumElasticInstanceCount": 20, "preWarmedInstanceCount": 2}},
        ),
    ]
    assert report.reasons["alwaysReady"] == ["weekly-promo"]


async def test_the_plan_max_burst_is_never_lowered(fake: FakeArm, gateway: AzureArmGateway) -> None:
    fake.state.max_burst = 80
    fake.state.always_ready = 5
    report = await tick(make_settings(), gateway, now=NIGHT)
    assert writes(fake) == [("PATCH", "web", {"properties": {"minimumElasticInstanceCount": 1}})]
    assert report.current is not None and report.current["maxBurst"] == 80


async def test_sync_plan_minimum_lowers_sku_capacity_by_get_then_put(
    fake: FakeArm, gateway: AzureArmGateway
) -> None:
    fake.state.always_ready = fake.state.capacity = 5
    settings = make_settings(SCALE_SYNC_PLAN_MINIMUM="true")

    report = await tick(settings, gateway, now=NIGHT)
    assert report.outcome == "applied", report.errors
    puts = fake.calls("PUT")
    assert len(puts) == 1 and puts[0].body["sku"]["capacity"] == 1
    assert puts[0].body["properties"]["maximumElasticWorkerCount"] == 20  # kept, not dropped
    assert (fake.state.always_ready, fake.state.capacity) == (1, 1)

    fake.clear()
    assert (await tick(settings, gateway, now=NIGHT)).outcome == "unchanged"
    assert writes(fake) == []


async def test_without_sync_the_plan_minimum_is_left_alone(
    fake: FakeArm, gateway: AzureArmGateway
) -> None:
    fake.state.always_ready = fake.state.capacity = 5
    await tick(make_settings(), gateway, now=NIGHT)
    assert fake.calls("PUT") == []
    assert fake.state.capacity == 5


async def test_403_on_the_plan_names_web_plan_contributor(
    fake: FakeArm, gateway: AzureArmGateway
) -> None:
    fake.state.max_burst = 10
    fake.fail(403, method="PATCH", path_contains="/serverfarms/", times=5)
    report = await tick(make_settings(), gateway, now=TUESDAY_PROMO)
    assert report.outcome == "failed"
    assert "Web Plan Contributor" in report.errors[0]
    assert "dip-plan" in report.errors[0]
    assert fake.calls("PATCH", "/config/web") == []  # nothing after the failed step


async def test_403_on_site_config_names_website_contributor(
    fake: FakeArm, gateway: AzureArmGateway
) -> None:
    fake.fail(403, method="PATCH", path_contains="/config/web")
    report = await tick(make_settings(), gateway)
    assert report.outcome == "failed"
    assert "Website Contributor on site dip-app" in report.errors[0]


async def test_half_applied_tick_says_partial_and_the_next_converges(
    fake: FakeArm, gateway: AzureArmGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dipguard.scale")
    fake.state.max_burst = 10
    fake.fail(500, method="PATCH", path_contains="/config/web", times=FAST.attempts)
    first = await tick(make_settings(), gateway, now=TUESDAY_PROMO)
    assert first.outcome == "partial"
    assert [(c["field"], c["applied"]) for c in first.changed] == [
        ("maxBurst", True),
        ("alwaysReady", False),
        ("preWarmed", False),
    ]
    logged = [r for r in caplog.records if r.getMessage().startswith("scale_tick ")]
    assert logged[-1].levelno == logging.WARNING
    assert json.loads(logged[-1].getMessage()[len("scale_tick ") :])["outcome"] == "partial"

    second = await tick(make_settings(), gateway, now=TUESDAY_PROMO)
    assert second.outcome == "applied"
    assert (fake.state.always_ready, fake.state.pre_warmed, fake.state.max_burst) == (20, 2, 60)


async def test_dry_run_reads_and_reports_but_never_writes(
    fake: FakeArm, gateway: AzureArmGateway
) -> None:
    report = await tick(make_settings(SCALE_DRY_RUN="true"), gateway)
    assert report.outcome == "dry_run"
    assert report.changed == [{"field": "alwaysReady", "from": 1, "to": 5, "applied": False}]
    assert writes(fake) == []


async def test_invalid_schedule_keeps_the_current_state(
    fake: FakeArm, gateway: AzureArmGateway
) -> None:
    bad = dict(SCHEDULE, windows=[{**SCHEDULE["windows"][0], "start": "7:00"}])
    fake.state.always_ready = 3
    report = await tick(make_settings(SCALE_SCHEDULE=json.dumps(bad)), gateway)
    assert report.outcome == "invalid_schedule"
    assert "windows[0].start" in report.errors[0]
    assert writes(fake) == []
    assert report.desired == {"alwaysReady": 3, "preWarmed": 1, "maxBurst": 3}


async def test_tick_log_line_is_compact_json_with_the_required_fields(
    fake: FakeArm, gateway: AzureArmGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dipguard.scale")
    await tick(make_settings(), gateway)
    [record] = [r for r in caplog.records if r.getMessage().startswith("scale_tick ")]
    text = record.getMessage()
    assert " " not in text[len("scale_tick ") :].replace("business-hours", "")  # compact
    payload = json.loads(text[len("scale_tick ") :])
    assert payload["event"] == "scale_tick" and payload["outcome"] == "applied"
    assert payload["desired"] == {"alwaysReady": 5, "preWarmed": 1, "maxBurst": 5}
    assert payload["current"] == {
        "alwaysReady": 1,
        "preWarmed": 1,
        "maxBurst": 20,
        "planMinimum": 1,
    }
    assert payload["changed"] == [{"field": "alwaysReady", "from": 1, "to": 5, "applied": True}]
    assert payload["reasons"]["alwaysReady"] == ["business-hours"]


async def test_only_the_fields_that_differ_are_patched() -> None:
    gw = MemoryGateway(always_ready=5, pre_warmed=3)
    await tick(make_settings(), gw)
    assert gw.writes() == [("patch_site_config", {"always_ready": None, "pre_warmed": 1})]


async def test_unreadable_surges_never_lower_always_ready() -> None:
    class BrokenTable:
        url = "https://broken.table.core.windows.net"
        table_name = "surges"

        async def create_table(self) -> None:
            raise ConnectionError("storage down")

    gw = MemoryGateway(always_ready=12)
    report = await run_tick(
        make_settings(),
        now=NOON,
        gateway=gw,
        env=APP_ENV,
        surge_table=BrokenTable(),  # type: ignore[arg-type]
        retry=FAST,
    )
    assert report.outcome == "partial"
    assert "surges unreadable" in report.errors[0]
    assert gw.site.always_ready == 12
    # Raising is still allowed without the surges.
    low = MemoryGateway(always_ready=0)
    await run_tick(
        make_settings(),
        now=NOON,
        gateway=low,
        env=APP_ENV,
        surge_table=BrokenTable(),  # type: ignore[arg-type]
        retry=FAST,
    )
    assert low.site.always_ready == 5


async def test_an_invalid_schedule_still_honours_a_surge() -> None:
    gw = MemoryGateway(always_ready=2, max_burst=10)
    surge = Surge("b" * 32, 15, NOON - timedelta(minutes=5), NOON + timedelta(minutes=25), "recall")
    report = await tick(make_settings(SCALE_SCHEDULE="{not json"), gw, surges=[surge])
    assert report.outcome == "invalid_schedule"
    assert gw.site.always_ready == 15 and gw.plan.max_burst == 15
    assert report.reasons["alwaysReady"] == [surge.label]


async def test_a_surge_raises_always_ready_and_its_expiry_lowers_it() -> None:
    gw = MemoryGateway(always_ready=5)
    surge = Surge("c" * 32, 18, NOON, NOON + timedelta(minutes=30), "recall")
    during = await tick(make_settings(), gw, surges=[surge], now=NOON + timedelta(minutes=1))
    assert gw.site.always_ready == 18 and during.reasons["alwaysReady"] == [surge.label]
    await tick(make_settings(), gw, surges=[surge], now=NOON + timedelta(minutes=30))
    assert gw.site.always_ready == 5


async def test_a_whole_tick_is_cut_off_by_its_timeout_and_still_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="dipguard.scale")
    gw = MemoryGateway()
    gw.block = asyncio.Event()  # never set: the read never returns
    report = await run_tick(
        make_settings(), now=NOON, gateway=gw, env=APP_ENV, surges=[], timeout=0.2
    )
    assert report.outcome == "failed"
    assert "cut off" in report.errors[0]
    assert any('"outcome":"failed"' in r.getMessage() for r in caplog.records)


async def test_reading_the_plan_forbidden_still_applies_the_site_and_says_partial() -> None:
    gw = MemoryGateway()
    gw.failures["get_plan"] = [ArmError("forbidden", status=403)]
    report = await tick(make_settings(), gw)
    assert report.outcome == "partial"
    assert gw.site.always_ready == 5
    assert "Web Plan Contributor" in report.errors[0]


async def test_a_tick_without_a_target_fails_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dipguard.scale")

    def no_gateway(settings: ScaleSettings, target: Target) -> Any:
        raise AssertionError("a tick with no target must not build a gateway")

    report = await run_tick(
        make_settings(), now=NOON, env={}, surges=[], gateway_factory=no_gateway
    )
    assert report.outcome == "failed"
    assert "SCALE_SUBSCRIPTION_ID" in report.errors[0]


async def test_a_tick_builds_its_gateway_for_the_target_and_closes_it() -> None:
    built: list[tuple[Target, Any]] = []

    class Closing(MemoryGateway):
        closed = False

        async def close(self) -> None:
            self.closed = True

    def factory(settings: ScaleSettings, target: Target) -> Any:
        gateway = Closing(always_ready=1)
        built.append((target, gateway))
        return gateway

    report = await run_tick(
        make_settings(), now=NOON, env=APP_ENV, surges=[], gateway_factory=factory, retry=FAST
    )
    assert report.outcome == "applied"
    [(target, gateway)] = built
    assert (target.resource_group, target.site_name) == ("rg-dip", "dip-app")
    assert gateway.site.always_ready == 5 and gateway.closed


async def test_a_tick_needs_somewhere_to_read_surges_and_a_gateway() -> None:
    with pytest.raises(TypeError, match="surge_table or surges"):
        await run_tick(make_settings(), now=NOON, gateway=MemoryGateway())
    with pytest.raises(TypeError, match="gateway_factory or gateway"):
        await run_tick(make_settings(), now=NOON, surges=[])


def test_start_up_check_logs_a_bad_schedule(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="dipguard.scale")
    error = check_schedule(make_settings(SCALE_SCHEDULE='{"timezone": "Nowhere/Land"}'))
    assert error is not None and error.field == "timezone"
    assert "timezone" in caplog.text
    assert check_schedule(make_settings()) is None


def test_start_up_check_holds_the_schedule_to_the_regions_burst_limit() -> None:
    # The promotion's burst of 60 is fine where the limit is 100, not where it is 20.
    error = check_schedule(make_settings(SCALE_MAX_BURST_LIMIT="20"))
    assert error is not None and error.field == "windows[1].maxBurst"
    assert "20" in error.message and "SCALE_MAX_BURST_LIMIT" in error.message


async def test_a_schedule_above_the_burst_limit_keeps_the_current_state(
    fake: FakeArm, gateway: AzureArmGateway
) -> None:
    report = await tick(make_settings(SCALE_MAX_BURST_LIMIT="20"), gateway, now=TUESDAY_PROMO)
    assert report.outcome == "invalid_schedule"
    assert "windows[1].maxBurst" in report.errors[0]
    assert writes(fake) == []


@pytest.mark.parametrize(
    "text",
    ['{"timezone": "UTC", "default": {"alwaysReady": ' + "9" * 5000 + "}}", "[" * 100_000],
    ids=["5,000-digit number", "100,000 nested arrays"],
)
def test_start_up_check_logs_text_the_decoder_refuses_by_setting_and_briefly(
    text: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="dipguard.scale")
    error = check_schedule(make_settings(SCALE_SCHEDULE=text))
    assert error is not None and error.field is None
    [record] = caplog.records
    assert record.getMessage().startswith("SCALE_SCHEDULE is invalid")
    assert len(record.getMessage()) < 300


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(schedule_texts)
def test_start_up_check_returns_none_or_the_schedule_error_and_never_raises(text: str) -> None:
    error = check_schedule(make_settings(SCALE_SCHEDULE=text))
    assert error is None or isinstance(error, ScheduleError)
