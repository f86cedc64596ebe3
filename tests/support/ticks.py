"""A scale tick for tests: its clock, settings and target, a sleep that records the
retry waits, the writes a fake ARM saw, and an in-memory gateway."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from shared.scale.arm import ArmError, PlanState, SiteState
from shared.scale.retry import RetryPolicy
from shared.scale.schedule import Surge
from shared.scale.settings import ScaleSettings, load_scale_settings
from shared.scale.tick import TickReport, run_tick
from tests.support.fake_arm import SUBSCRIPTION, FakeArm
from tests.support.keys import SECRET
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


def make_settings(**values: str) -> ScaleSettings:
    # The shared example's promotion asks for a burst of 60, as in a region whose Elastic
    # Premium limit is 100.
    env = {
        "CustomerStorage": "UseDevelopmentStorage=true",
        "LOOKUP_KEY_SECRET": SECRET,
        "SCALE_SCHEDULE": json.dumps(SCHEDULE),
        "SCALE_MAX_BURST_LIMIT": "100",
        **values,
    }
    return load_scale_settings(env)


class SleepRecorder:
    """Stands in for asyncio.sleep so retry waits are checked, not waited."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


async def tick(
    settings: ScaleSettings,
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
