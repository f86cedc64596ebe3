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
    """Validate SCALE_SCHEDULE now (start-up) and log a bad one; never raises.

    parse_schedule raises ScheduleError and nothing else, whatever the setting holds, so
    function_app.py, which calls this as it is imported, loads and serves the data dip."""
    try:
        parse_schedule(
            settings.scale_schedule,
            zone_redundant=settings.scale_zone_redundant,
            max_burst_limit=settings.scale_max_burst_limit,
        )
    except ScheduleError as exc:
        LOG.error("SCALE_SCHEDULE is invalid, the timer will keep the current state: %s", exc)
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


@dataclass(frozen=True)
class _Wanted:
    """What a tick aims for at ``at``: the schedule (None when SCALE_SCHEDULE is invalid)
    and the active surges (``surges_known`` False when they could not be read)."""

    at: datetime
    schedule: Schedule | None
    surges: Sequence[Surge]
    surges_known: bool


@dataclass(frozen=True)
class _Arm:
    """The app's ARM side for one tick: the gateway, the app it scales, the retrying call."""

    gateway: ArmGateway
    target: Target
    call: Retrier


@dataclass(frozen=True)
class _Decision:
    """What _decide read from ARM and decided: the errors met, the plan's name, the
    current and desired state, and the writes to make in order. ``ended`` is the outcome
    when the tick cannot go on to write (a read failed, or no desired state)."""

    errors: tuple[str, ...] = ()
    plan_name: str | None = None
    current: dict[str, int | None] | None = None
    desired: dict[str, int] | None = None
    reasons: dict[str, list[str]] = field(default_factory=dict)
    steps: tuple[_Step, ...] = ()
    ended: str | None = None


class _Undecidable(Exception):
    """No desired state can be worked out; the message says why."""


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

    def finish(outcome: str) -> None:
        report.outcome = "invalid_schedule" if schedule is None else outcome

    arm = _Arm(gateway, target, call)
    decision = await _decide(_Wanted(at, schedule, surges, surges_known), arm, settings)
    report.errors.extend(decision.errors)
    if decision.plan_name is not None:
        report.target["plan"] = decision.plan_name
    if decision.current is not None:
        report.current = decision.current
    if decision.desired is not None:
        report.desired = decision.desired
        report.reasons = decision.reasons
    if decision.ended is not None:
        finish(decision.ended)
        return
    report.changed = [
        {"field": step.field, "from": step.before, "to": step.after, "applied": False}
        for step in decision.steps
    ]
    if settings.scale_dry_run:
        finish("dry_run" if not report.errors else "partial")
        return
    finish(await _write(report, decision, arm))


async def _decide(wanted: _Wanted, arm: _Arm, settings: ScaleSettings) -> _Decision:
    """Read the site config and the plan, work out the desired state, and list the writes
    that get there: plan maximum first, then the site, then the plan minimum."""
    target, call = arm.target, arm.call
    try:
        site = await call(arm.gateway.get_site_config)
    except ArmError as err:
        hint = _role_hint(err, "site", target, "")
        return _Decision(
            errors=(f"reading site config failed ({err.status}): {err}{hint}",), ended="failed"
        )

    errors: list[str] = []
    plan: PlanState | None = None
    try:
        plan = await call(arm.gateway.get_plan)
    except ArmError as err:
        errors.append(
            f"reading the plan failed ({err.status}): {err}"
            f"{_role_hint(err, 'plan', target, target.plan_name)}; "
            "plan limits were not checked"
        )

    current: dict[str, int | None] = {
        "alwaysReady": site.always_ready,
        "preWarmed": site.pre_warmed,
        "maxBurst": plan.max_burst if plan else None,
        "planMinimum": plan.capacity if plan else None,
    }
    plan_name = plan.name if plan else None
    try:
        desired = _desired(wanted, site)
    except _Undecidable as exc:
        return _Decision(
            errors=(*errors, str(exc)), plan_name=plan_name, current=current, ended="failed"
        )
    desired_json = desired.as_json()

    steps: list[_Step] = []
    if plan is not None and (plan.max_burst or 0) < desired.max_burst:
        steps.append(_Step("maxBurst", plan.max_burst, desired.max_burst, "plan_max"))
    if site.always_ready != desired.always_ready:
        steps.append(_Step("alwaysReady", site.always_ready, desired.always_ready, "site"))
    if site.pre_warmed != desired.pre_warmed:
        steps.append(_Step("preWarmed", site.pre_warmed, desired.pre_warmed, "site"))
    if settings.scale_sync_plan_minimum and plan is not None:
        desired_json["planMinimum"] = desired.always_ready
        if plan.capacity != desired.always_ready:
            steps.append(_Step("planMinimum", plan.capacity, desired.always_ready, "plan_min"))
    return _Decision(
        errors=tuple(errors),
        plan_name=plan_name,
        current=current,
        desired=desired_json,
        reasons={k: list(v) for k, v in desired.reasons.items()},
        steps=tuple(steps),
    )


async def _write(report: TickReport, decision: _Decision, arm: _Arm) -> str:
    """Make the decided writes in order and return the outcome. Each write marks its
    fields applied in ``report.changed`` as it lands, so a tick cut off by its timeout
    still reports what it changed."""
    wrote = failed = False
    for kind in ("plan_max", "site", "plan_min"):
        group = {s.field: s.after for s in decision.steps if s.kind == kind}
        if not group:
            continue
        try:
            await arm.call(_writer(arm.gateway, kind, group))
        except ArmError as err:
            failed = True
            plan_name = (
                decision.plan_name if decision.plan_name is not None else arm.target.plan_name
            )
            hint = _role_hint(err, "site" if kind == "site" else "plan", arm.target, plan_name)
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
        return "partial" if wrote else "failed"
    if report.errors:
        return "partial"
    return "applied" if wrote else "unchanged"


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


def _desired(wanted: _Wanted, site: SiteState) -> Desired:
    """What the app should run now; _Undecidable when the schedule is invalid and the site
    reports nothing to keep."""
    at, surges = wanted.at, wanted.surges
    current_ar = site.always_ready
    if wanted.schedule is None:
        # A bad schedule keeps the app as it is, except that an operator's surge still
        # raises always-ready: that is an explicit instruction, not a guess.
        if current_ar is None or site.pre_warmed is None:
            raise _Undecidable("the site reports no always-ready/pre-warmed values to keep")
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
    desired = desired_at(wanted.schedule, at, surges)
    if not wanted.surges_known and current_ar is not None and desired.always_ready < current_ar:
        reasons = dict(desired.reasons)
        reasons["alwaysReady"] = ("current (surges unreadable)",)
        return Desired(current_ar, desired.pre_warmed, max(desired.max_burst, current_ar), reasons)
    return desired
