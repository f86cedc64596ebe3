"""The ARM side of the scale schedule: read, diff, and write only what differs.

One tick: read the app's site config and its plan, work out what the schedule and the
active surges ask for now (schedule.py), then make the fewest writes that get
there, in an order ARM accepts:

1. raise the plan's maximum burst first, because always-ready may not exceed it;
2. PATCH always-ready and pre-warmed on the site config, only the fields that differ;
3. with SCALE_SYNC_PLAN_MINIMUM, bring the plan minimum (sku.capacity) in step, because
   after always-ready is lowered the plan minimum has been seen to stay billed for hours.

Every tick ends in exactly one ``scale_tick {json}`` log line; the alert rule keys on its
``outcome``. A tick that stops half way says so ("partial"); the next one reads again and
converges, since nothing here remembers anything between ticks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from shared.scale import surge as surge_store
from shared.scale.arm import (
    ArmError,
    ArmGateway,
    ClosableGateway,
    GatewayFactory,
    PlanState,
    SiteState,
)
from shared.scale.retry import Retrier, RetryPolicy
from shared.scale.schedule import (
    Desired,
    Schedule,
    ScheduleError,
    Surge,
    desired_at,
    parse_schedule,
)
from shared.scale.settings import ScaleSettings
from shared.scale.target import Target, TargetError, resolve_target

if TYPE_CHECKING:
    from azure.data.tables.aio import TableClient

__all__ = [
    "PLAN_ROLE",
    "SITE_ROLE",
    "ScaleTickFailed",
    "TickReport",
    "check_schedule",
    "run_tick",
]

LOG = logging.getLogger("dipguard.scale")

SITE_ROLE = "Website Contributor"
PLAN_ROLE = "Web Plan Contributor"

# A whole timer tick, retries included, ends well before the next one is due.
TICK_TIMEOUT_SECONDS = 180.0


@dataclass
class TickReport:
    """What one tick found and did. ``outcome``: applied, unchanged, dry_run, failed,
    invalid_schedule or partial (some writes made, then one failed or a read was missing)."""

    outcome: str = "unchanged"
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    target: dict[str, str] | None = None
    desired: dict[str, int] | None = None
    current: dict[str, int | None] | None = None
    changed: list[dict[str, Any]] = field(default_factory=list)
    reasons: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    dry_run: bool = False
    duration_ms: int = 0
    schedule_invalid: bool = False

    @property
    def applied(self) -> bool:
        """The app is at the desired state now (nothing left for the next tick)."""
        return self.outcome in {"applied", "unchanged"}

    @property
    def broken(self) -> bool:
        """The app may not match the schedule: failed, partial or invalid_schedule."""
        return self.outcome in {"failed", "partial", "invalid_schedule"}

    def as_json(self) -> dict[str, Any]:
        return {
            "event": "scale_tick",
            "outcome": self.outcome,
            "at": self.at.astimezone(UTC).isoformat(timespec="seconds"),
            "target": self.target,
            "desired": self.desired,
            "current": self.current,
            "changed": self.changed,
            "reasons": self.reasons,
            "errors": self.errors,
            "dryRun": self.dry_run,
            "durationMs": self.duration_ms,
        }

    def log_line(self) -> str:
        return "scale_tick " + json.dumps(self.as_json(), separators=(",", ":"))


class ScaleTickFailed(RuntimeError):
    """Raised by the timer trigger after a broken tick, so the invocation itself is marked
    failed: Application Insights keeps every request, while traces may be sampled away."""

    def __init__(self, report: TickReport) -> None:
        super().__init__(f"scale tick {report.outcome}: {'; '.join(report.errors)}")
        self.report = report


def check_schedule(settings: ScaleSettings) -> ScheduleError | None:
    """Validate SCALE_SCHEDULE now (start-up) and log a bad one; never raises."""
    try:
        parse_schedule(
            settings.scale_schedule,
            zone_redundant=settings.scale_zone_redundant,
            max_burst_limit=settings.scale_max_burst_limit,
        )
    except ScheduleError as exc:
        LOG.error("scale schedule invalid, the timer will keep the current state: %s", exc)
        return exc
    return None


@dataclass
class _Step:
    field: str
    before: int | None
    after: int
    kind: str  # "plan_max", "site", "plan_min"


def _role_hint(err: ArmError, kind: str, target: Target, plan: str) -> str:
    if err.status != 403:
        return ""
    if kind == "site":
        return (
            f"; the identity needs {SITE_ROLE} on site {target.site_name} "
            f"(resource group {target.resource_group})"
        )
    return f"; the identity needs {PLAN_ROLE} on plan {plan or '(the site plan)'}"


async def run_tick(
    settings: ScaleSettings,
    *,
    surge_table: TableClient | None = None,
    surges: Sequence[Surge] | None = None,
    gateway_factory: GatewayFactory | None = None,
    gateway: ArmGateway | None = None,
    now: datetime | None = None,
    env: Mapping[str, str] | None = None,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    timeout: float = TICK_TIMEOUT_SECONDS,
) -> TickReport:
    """Bring the app to what the schedule and active surges ask for at ``now``; log once.

    The active surges come from ``surge_table``, or are given as ``surges``. The ARM gateway
    is built for the app to scale by ``gateway_factory`` (and closed after the tick), or is
    given ready as ``gateway``. The whole tick is cut off after ``timeout`` seconds, and
    still logs what it got done.
    """
    if surges is None and surge_table is None:
        raise TypeError("run_tick needs surge_table or surges")
    if gateway is None and gateway_factory is None:
        raise TypeError("run_tick needs gateway_factory or gateway")
    started = time.monotonic()
    at = (now or datetime.now(UTC)).astimezone(UTC)
    report = TickReport(at=at, dry_run=settings.scale_dry_run)
    opened: list[ClosableGateway] = []
    try:
        async with asyncio.timeout(timeout):
            await _tick(
                report,
                settings,
                at,
                _Sources(surge_table, surges, gateway_factory, gateway, env),
                opened,
                Retrier(retry or RetryPolicy(), sleep),
            )
    except TimeoutError:
        report.errors.append(f"the tick was cut off after {timeout:g} s")
        report.outcome = _broken_outcome(report)
    except Exception as exc:  # the log line must be written whatever went wrong
        report.errors.append(f"unexpected {type(exc).__name__}: {exc}")
        report.outcome = _broken_outcome(report)
        LOG.exception("scale tick crashed")
    finally:
        # Outside the timeout, so a cut-off tick still closes its HTTP session.
        for built in opened:
            await built.close()
    report.duration_ms = round((time.monotonic() - started) * 1000)
    level = {
        "applied": logging.INFO,
        "unchanged": logging.INFO,
        "dry_run": logging.INFO,
        "partial": logging.WARNING,
    }.get(report.outcome, logging.ERROR)
    LOG.log(level, "%s", report.log_line())
    return report


def _broken_outcome(report: TickReport) -> str:
    if report.schedule_invalid:
        return "invalid_schedule"
    return "partial" if any(c.get("applied") for c in report.changed) else "failed"


@dataclass(frozen=True)
class _Sources:
    """Where a tick reads the surges and gets its ARM gateway (see run_tick)."""

    surge_table: TableClient | None
    surges: Sequence[Surge] | None
    gateway_factory: GatewayFactory | None
    gateway: ArmGateway | None
    env: Mapping[str, str] | None


async def _tick(
    report: TickReport,
    settings: ScaleSettings,
    at: datetime,
    sources: _Sources,
    opened: list[ClosableGateway],
    call: Retrier,
) -> None:
    schedule: Schedule | None = None
    try:
        schedule = parse_schedule(
            settings.scale_schedule,
            zone_redundant=settings.scale_zone_redundant,
            max_burst_limit=settings.scale_max_burst_limit,
        )
    except ScheduleError as exc:
        report.schedule_invalid = True
        report.errors.append(f"invalid schedule: {exc}")

    surges_known = True
    surges = sources.surges
    if surges is None:
        assert sources.surge_table is not None
        try:
            surges = await asyncio.wait_for(
                surge_store.list_active(sources.surge_table, now=at), timeout=10
            )
        except Exception as exc:
            # Without the surges, lowering always-ready could cancel one: raise only.
            surges_known = False
            surges = []
            report.errors.append(
                f"surges unreadable ({type(exc).__name__}: {exc}); "
                "always-ready will not be lowered this tick"
            )

    try:
        target = resolve_target(settings, sources.env)
    except TargetError as exc:
        report.errors.append(str(exc))
        report.outcome = "invalid_schedule" if schedule is None else "failed"
        return
    report.target = target.as_json()

    gateway = sources.gateway
    if gateway is None:
        assert sources.gateway_factory is not None
        built = sources.gateway_factory(settings, target)
        opened.append(built)
        gateway = built
    await _converge(report, settings, at, gateway, schedule, surges, surges_known, target, call)


async def _converge(
    report: TickReport,
    settings: ScaleSettings,
    at: datetime,
    gateway: ArmGateway,
    schedule: Schedule | None,
    surges: Sequence[Surge],
    surges_known: bool,
    target: Target,
    call: Retrier,
) -> None:
    invalid = schedule is None

    def finish(outcome: str) -> None:
        report.outcome = "invalid_schedule" if invalid else outcome

    try:
        site = await call(gateway.get_site_config)
    except ArmError as err:
        report.errors.append(
            f"reading site config failed ({err.status}): {err}{_role_hint(err, 'site', target, '')}"
        )
        finish("failed")
        return

    plan: PlanState | None = None
    try:
        plan = await call(gateway.get_plan)
        if report.target is not None:
            report.target["plan"] = plan.name
    except ArmError as err:
        report.errors.append(
            f"reading the plan failed ({err.status}): {err}"
            f"{_role_hint(err, 'plan', target, target.plan_name)}; "
            "plan limits were not checked"
        )

    report.current = {
        "alwaysReady": site.always_ready,
        "preWarmed": site.pre_warmed,
        "maxBurst": plan.max_burst if plan else None,
        "planMinimum": plan.capacity if plan else None,
    }

    desired = _desired(report, schedule, at, surges, surges_known, site)
    if desired is None:
        finish("failed")
        return
    report.desired = desired.as_json()
    report.reasons = {k: list(v) for k, v in desired.reasons.items()}

    steps: list[_Step] = []
    if plan is not None and (plan.max_burst or 0) < desired.max_burst:
        steps.append(_Step("maxBurst", plan.max_burst, desired.max_burst, "plan_max"))
    if site.always_ready != desired.always_ready:
        steps.append(_Step("alwaysReady", site.always_ready, desired.always_ready, "site"))
    if site.pre_warmed != desired.pre_warmed:
        steps.append(_Step("preWarmed", site.pre_warmed, desired.pre_warmed, "site"))
    if settings.scale_sync_plan_minimum and plan is not None:
        report.desired["planMinimum"] = desired.always_ready
        if plan.capacity != desired.always_ready:
            steps.append(_Step("planMinimum", plan.capacity, desired.always_ready, "plan_min"))

    for step in steps:
        report.changed.append(
            {"field": step.field, "from": step.before, "to": step.after, "applied": False}
        )
    if settings.scale_dry_run:
        finish("dry_run" if not report.errors else "partial")
        return

    wrote = failed = False
    for kind in ("plan_max", "site", "plan_min"):
        group = {s.field: s.after for s in steps if s.kind == kind}
        if not group:
            continue
        try:
            await call(_writer(gateway, kind, group))
        except ArmError as err:
            failed = True
            plan_name = plan.name if plan else target.plan_name
            hint = _role_hint(err, "site" if kind == "site" else "plan", target, plan_name)
            report.errors.append(
                f"setting {', '.join(group)} failed ({err.status}): {err}{hint}; "
                "later changes were not attempted, the next tick retries"
            )
            break
        wrote = True
        for entry in report.changed:
            if entry["field"] in group:
                entry["applied"] = True

    if failed:
        finish("partial" if wrote else "failed")
    elif report.errors:
        finish("partial")
    else:
        finish("applied" if wrote else "unchanged")


def _writer(
    gateway: ArmGateway, kind: str, values: Mapping[str, int]
) -> Callable[[], Awaitable[object]]:
    if kind == "plan_max":
        return lambda: gateway.patch_plan(max_burst=values["maxBurst"])
    if kind == "site":
        return lambda: gateway.patch_site_config(
            always_ready=values.get("alwaysReady"), pre_warmed=values.get("preWarmed")
        )
    return lambda: gateway.put_plan(capacity=values["planMinimum"])


def _desired(
    report: TickReport,
    schedule: Schedule | None,
    at: datetime,
    surges: Sequence[Surge],
    surges_known: bool,
    site: SiteState,
) -> Desired | None:
    current_ar = site.always_ready
    if schedule is None:
        # A bad schedule keeps the app as it is, except that an operator's surge still
        # raises always-ready: that is an explicit instruction, not a guess.
        if current_ar is None or site.pre_warmed is None:
            report.errors.append("the site reports no always-ready/pre-warmed values to keep")
            return None
        live = [s for s in surges if s.starts_at <= at < s.expires_at]
        top = max(live, key=lambda s: s.always_ready, default=None)
        if top is not None and top.always_ready > current_ar:
            ar, why = top.always_ready, (top.label,)
        else:
            ar, why = current_ar, ("current",)
        return Desired(
            ar,
            site.pre_warmed,
            ar,
            {"alwaysReady": why, "preWarmed": ("current",), "maxBurst": why},
        )
    desired = desired_at(schedule, at, surges)
    if not surges_known and current_ar is not None and desired.always_ready < current_ar:
        reasons = dict(desired.reasons)
        reasons["alwaysReady"] = ("current (surges unreadable)",)
        return Desired(current_ar, desired.pre_warmed, max(desired.max_burst, current_ar), reasons)
    return desired
