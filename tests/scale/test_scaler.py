"""The scale tick: through azure-mgmt-web against an HTTPS fake ARM, and its decisions
against an in-memory gateway."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from shared.scale.arm import ArmError, AzureArmGateway, PlanState, SiteState, _retry_after_seconds
from shared.scale.retry import RetryPolicy
from shared.scale.schedule import Surge
from shared.scale.target import Target, TargetError, resolve_target
from shared.scale.tick import TickReport, check_schedule, run_tick
from shared.settings import Settings, load_settings
from tests.support.fake_arm import SUBSCRIPTION, FakeArm, StubCredential
from tests.support.schedules import example_schedule

NOON = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # a Wednesday
NIGHT = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
TUESDAY_PROMO = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)

SCHEDULE = example_schedule("UTC")

APP_ENV = {
    "WEBSITE_OWNER_NAME": f"{SUBSCRIPTION}+rg-dip-EastUSwebspace",
    "WEBSITE_RESOURCE_GROUP": "rg-dip",
    "WEBSITE_SITE_NAME": "dip-app",
}

FAST = RetryPolicy(
    attempts=3, backoff_base=0.01, backoff_max=0.05, retry_after_max=30, budget_seconds=60
)


def make_settings(**values: str) -> Settings:
    # The shared example's promotion asks for a burst of 60, as in a region whose Elastic
    # Premium limit is 100.
    env = {
        "CustomerStorage": "UseDevelopmentStorage=true",
        "SCALE_SCHEDULE": json.dumps(SCHEDULE),
        "SCALE_MAX_BURST_LIMIT": "100",
        **values,
    }
    return load_settings(env)


class SleepRecorder:
    """Stands in for asyncio.sleep so retry waits are checked, not waited."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeArm]:
    arm = FakeArm(tmp_path).start()
    yield arm
    arm.stop()


@pytest.fixture
def credential() -> StubCredential:
    return StubCredential()


@pytest.fixture
async def gateway(fake: FakeArm, credential: StubCredential) -> AsyncIterator[AzureArmGateway]:
    gw = AzureArmGateway(
        Target(SUBSCRIPTION, "rg-dip", "dip-app"),
        credential,
        endpoint=fake.endpoint,
        connection_verify=fake.ca_path,
        timeout=1.0,
    )
    async with gw:
        yield gw


async def tick(
    settings: Settings,
    gateway: Any,
    *,
    now: datetime = NOON,
    surges: list[Surge] | None = None,
    sleep: SleepRecorder | None = None,
    retry: RetryPolicy = FAST,
) -> TickReport:
    return await run_tick(
        settings,
        now=now,
        gateway=gateway,
        env=APP_ENV,
        surges=[] if surges is None else surges,
        retry=retry,
        sleep=sleep or SleepRecorder(),
    )


def writes(fake: FakeArm) -> list[tuple[str, str, Any]]:
    return [
        (r.method, r.path.rsplit("/", 1)[-1], r.body)
        for r in fake.requests
        if r.method in {"PATCH", "PUT"}
    ]


# --------------------------------------------------------------------------- via fake ARM


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


async def test_the_plan_is_found_from_the_sites_server_farm_id(
    tmp_path: Path, credential: StubCredential
) -> None:
    arm = FakeArm(tmp_path, plan="shared-plan", plan_resource_group="rg-plans").start()
    try:
        async with AzureArmGateway(
            Target(SUBSCRIPTION, "rg-dip", "dip-app"),
            credential,
            endpoint=arm.endpoint,
            connection_verify=arm.ca_path,
            timeout=1.0,
        ) as gw:
            report = await tick(make_settings(), gw, now=TUESDAY_PROMO)
        assert report.outcome == "applied", report.errors
        assert report.target is not None and report.target["plan"] == "shared-plan"
        assert arm.calls(
            "PATCH", "/resourceGroups/rg-plans/providers/Microsoft.Web/serverfarms/shared-plan"
        )
    finally:
        arm.stop()


async def test_token_scope_follows_the_arm_endpoint(
    fake: FakeArm, gateway: AzureArmGateway, credential: StubCredential
) -> None:
    await tick(make_settings(), gateway)
    assert set(credential.scopes) == {(f"{fake.endpoint}/.default",)}
    assert {r.authorization for r in fake.requests} == {"Bearer test-token"}
    assert all(r.query["api-version"] for r in fake.requests)


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


async def test_a_hung_request_times_out_and_is_retried(
    fake: FakeArm, gateway: AzureArmGateway
) -> None:
    fake.hang(method="GET", path_contains="/config/web")
    started = time.monotonic()
    report = await tick(make_settings(), gateway)
    assert report.outcome == "applied", report.errors
    assert len(fake.calls("GET", "/config/web")) == 2
    # Bounded by the 1 s client timeout, not by the fake's 5 s hang.
    assert time.monotonic() - started < 4.5


async def test_400_is_not_retried(fake: FakeArm, gateway: AzureArmGateway) -> None:
    fake.fail(400, method="PATCH")
    sleep = SleepRecorder()
    report = await tick(make_settings(), gateway, sleep=sleep)
    assert report.outcome == "failed"
    assert sleep.delays == [] and len(fake.calls("PATCH")) == 1


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


# --------------------------------------------------------------------------- decisions


class MemoryGateway:
    """In-memory ArmGateway: state, a call log, and queued failures per operation."""

    def __init__(
        self, *, always_ready: int = 1, pre_warmed: int = 1, max_burst: int = 20, capacity: int = 1
    ) -> None:
        self.site = SiteState(always_ready, pre_warmed)
        self.plan = PlanState("plan", "rg", max_burst, capacity)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.failures: dict[str, list[ArmError]] = {}
        self.block: asyncio.Event | None = None

    def _enter(self, op: str, **args: Any) -> None:
        self.calls.append((op, args))
        queue = self.failures.get(op)
        if queue:
            raise queue.pop(0)

    async def get_site_config(self) -> SiteState:
        if self.block is not None:
            await self.block.wait()
        self._enter("get_site_config")
        return self.site

    async def patch_site_config(
        self, *, always_ready: int | None = None, pre_warmed: int | None = None
    ) -> None:
        self._enter("patch_site_config", always_ready=always_ready, pre_warmed=pre_warmed)
        self.site = SiteState(
            always_ready if always_ready is not None else self.site.always_ready,
            pre_warmed if pre_warmed is not None else self.site.pre_warmed,
        )

    async def get_plan(self) -> PlanState:
        self._enter("get_plan")
        return self.plan

    async def patch_plan(self, *, max_burst: int) -> None:
        self._enter("patch_plan", max_burst=max_burst)
        self.plan = PlanState("plan", "rg", max_burst, self.plan.capacity)

    async def put_plan(self, *, capacity: int) -> bool:
        self._enter("put_plan", capacity=capacity)
        self.plan = PlanState("plan", "rg", self.plan.max_burst, capacity)
        return True

    def writes(self) -> list[tuple[str, dict[str, Any]]]:
        return [c for c in self.calls if not c[0].startswith("get")]


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


async def test_budget_stops_retrying_before_the_timer_period() -> None:
    gw = MemoryGateway()
    gw.failures["get_site_config"] = [ArmError("busy", status=503) for _ in range(5)]
    sleep = SleepRecorder()
    policy = RetryPolicy(attempts=10, backoff_base=5, backoff_max=5, budget_seconds=1)
    report = await tick(make_settings(), gw, sleep=sleep, retry=policy)
    assert report.outcome == "failed"
    assert sleep.delays == []  # the first wait would already pass the budget


# --------------------------------------------------------------------------- target


def test_target_comes_from_the_variables_azure_sets() -> None:
    target = resolve_target(make_settings(), APP_ENV)
    assert target == Target(SUBSCRIPTION, "rg-dip", "dip-app", "")


def test_target_overrides_win_over_the_environment() -> None:
    settings = make_settings(
        SCALE_SUBSCRIPTION_ID="sub-x",
        SCALE_RESOURCE_GROUP="rg-x",
        SCALE_SITE_NAME="app-x",
        SCALE_PLAN_NAME="plan-x",
    )
    assert resolve_target(settings, APP_ENV) == Target("sub-x", "rg-x", "app-x", "plan-x")


@pytest.mark.parametrize(
    "missing", ["WEBSITE_OWNER_NAME", "WEBSITE_RESOURCE_GROUP", "WEBSITE_SITE_NAME"]
)
def test_missing_target_names_the_setting_to_set(missing: str) -> None:
    env = {k: v for k, v in APP_ENV.items() if k != missing}
    with pytest.raises(TargetError) as caught:
        resolve_target(make_settings(), env)
    assert caught.value.name.startswith("SCALE_")


async def test_a_tick_without_a_target_fails_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dipguard.scale")

    def no_gateway(settings: Settings, target: Target) -> Any:
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

    def factory(settings: Settings, target: Target) -> Any:
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


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert _retry_after_seconds("12") == 12.0
    assert _retry_after_seconds(None) is None
    assert _retry_after_seconds("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (_retry_after_seconds(later) or 0) <= 30


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


async def test_fake_arm_refuses_pre_warmed_above_ten_as_arm_does(
    fake: FakeArm, gateway: AzureArmGateway
) -> None:
    # The stand-in holds ARM's published bounds, so a gateway that sent 11 would see the 400
    # ARM gives, and nothing would change.
    with pytest.raises(ArmError):
        await gateway.patch_site_config(always_ready=None, pre_warmed=11)
    assert fake.state.pre_warmed == 1
    await gateway.patch_site_config(always_ready=None, pre_warmed=10)
    assert fake.state.pre_warmed == 10
