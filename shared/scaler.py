"""The ARM side of the scale schedule: read, diff, and write only what differs.

One tick: read the app's site config and its plan, work out what the schedule and the
active surges ask for now (shared/schedule.py), then make the fewest writes that get
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
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from shared.schedule import Desired, Schedule, ScheduleError, Surge, desired_at, parse_schedule
from shared.settings import Settings

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.data.tables.aio import TableClient

__all__ = [
    "ArmError",
    "ArmGateway",
    "AzureArmGateway",
    "PlanState",
    "RetryPolicy",
    "ScaleTickFailed",
    "SiteState",
    "Target",
    "TargetError",
    "TickReport",
    "check_schedule",
    "resolve_target",
    "run_tick",
    "set_gateway_factory",
]

LOG = logging.getLogger("dipguard.scale")

SITE_ROLE = "Website Contributor"
PLAN_ROLE = "Web Plan Contributor"

# Every single ARM request gives up after this long; a hung connection must not eat the
# timer period (5 minutes by default).
ARM_REQUEST_TIMEOUT_SECONDS = 15.0
# A whole timer tick, retries included, ends well before the next one is due.
TICK_TIMEOUT_SECONDS = 180.0


# --------------------------------------------------------------------------- target


class TargetError(ValueError):
    """The app to scale cannot be worked out; ``name`` is the variable to set."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


@dataclass(frozen=True)
class Target:
    subscription_id: str
    resource_group: str
    site_name: str
    # Empty: read it from the site's serverFarmId.
    plan_name: str = ""

    def as_json(self) -> dict[str, str]:
        return {"subscription": self.subscription_id, "resourceGroup": self.resource_group,
                "site": self.site_name, "plan": self.plan_name}


def resolve_target(settings: Settings, env: Mapping[str, str] | None = None) -> Target:
    """The app to scale: the SCALE_* overrides, else the variables Azure sets in the app."""
    source = os.environ if env is None else env
    owner = source.get("WEBSITE_OWNER_NAME", "").strip()
    # WEBSITE_OWNER_NAME is "<subscription id>+<resource group>-<region>webspace".
    subscription = settings.scale_subscription_id or owner.partition("+")[0].strip()
    resource_group = settings.scale_resource_group or source.get("WEBSITE_RESOURCE_GROUP", "")
    site = settings.scale_site_name or source.get("WEBSITE_SITE_NAME", "")
    if not subscription:
        raise TargetError("SCALE_SUBSCRIPTION_ID",
                          "not set, and WEBSITE_OWNER_NAME does not give a subscription")
    if not resource_group.strip():
        raise TargetError("SCALE_RESOURCE_GROUP", "not set, and WEBSITE_RESOURCE_GROUP is empty")
    if not site.strip():
        raise TargetError("SCALE_SITE_NAME", "not set, and WEBSITE_SITE_NAME is empty")
    return Target(subscription, resource_group.strip(), site.strip(), settings.scale_plan_name)


# --------------------------------------------------------------------------- gateway


@dataclass(frozen=True)
class SiteState:
    always_ready: int | None
    pre_warmed: int | None


@dataclass(frozen=True)
class PlanState:
    name: str
    resource_group: str
    max_burst: int | None
    capacity: int | None


class ArmError(Exception):
    """An ARM call failed. ``status`` is None when no response came (timeout, connection)."""

    def __init__(self, message: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status == 429 or self.status >= 500


class ArmGateway(Protocol):
    """The few ARM operations a tick needs, so the decisions can be tested without HTTP."""

    async def get_site_config(self) -> SiteState: ...

    async def patch_site_config(self, *, always_ready: int | None = None,
                                pre_warmed: int | None = None) -> None: ...

    async def get_plan(self) -> PlanState: ...

    async def patch_plan(self, *, max_burst: int) -> None: ...

    async def put_plan(self, *, capacity: int) -> bool:
        """GET the plan and PUT it back with sku.capacity set; False if it already was."""
        ...


def _retry_after_seconds(value: str | None) -> float | None:
    # azure-core has a parser, but only as a private helper; the header is either
    # delta-seconds or an HTTP date.
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class AzureArmGateway:
    """ArmGateway over azure-mgmt-web's async client.

    The async client keeps the timer off the worker's thread pool and shares aiohttp with
    the Table client. Its own retry policy is switched off: azure-core sleeps for whatever
    Retry-After says, uncapped, and cannot see the tick's overall budget, so run_tick
    retries instead.
    """

    def __init__(self, target: Target, credential: AsyncTokenCredential, *,
                 endpoint: str = "https://management.azure.com",
                 connection_verify: bool | str = True,
                 timeout: float = ARM_REQUEST_TIMEOUT_SECONDS,
                 owns_credential: bool = False) -> None:
        from azure.mgmt.web.aio import WebSiteManagementClient

        base = endpoint.rstrip("/")
        self.target = target
        self._credential = credential
        self._owns_credential = owns_credential
        self._client = WebSiteManagementClient(
            credential,
            target.subscription_id,
            base_url=base,
            # Sovereign clouds: the token audience is the ARM endpoint itself.
            credential_scopes=[f"{base}/.default"],
            retry_total=0,
            connection_timeout=timeout,
            read_timeout=timeout,
            connection_verify=connection_verify,
            polling_interval=1,
        )
        self._plan_ref: tuple[str, str] | None = (
            (target.resource_group, target.plan_name) if target.plan_name else None)

    @classmethod
    def from_settings(cls, settings: Settings, target: Target) -> AzureArmGateway:
        from azure.identity.aio import DefaultAzureCredential

        # The app's managed identity in Azure; developer credentials locally. One per tick:
        # a token every five minutes is cheap, and nothing is left open between ticks.
        return cls(target, DefaultAzureCredential(), endpoint=settings.arm_endpoint,
                   owns_credential=True)

    async def close(self) -> None:
        await self._client.close()
        if self._owns_credential:
            await self._credential.close()

    async def __aenter__(self) -> AzureArmGateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def _translate(self) -> AsyncIterator[None]:
        from azure.core.exceptions import (
            AzureError,
            ClientAuthenticationError,
            HttpResponseError,
            ServiceRequestError,
            ServiceResponseError,
        )

        try:
            yield
        except ClientAuthenticationError as exc:
            # Raised by the credential as well as for a 401: no response means no token.
            status = exc.status_code if exc.response is not None else 401
            raise ArmError(f"authentication failed: {exc.message}", status=status) from exc
        except HttpResponseError as exc:
            headers: Mapping[str, str] = getattr(exc.response, "headers", None) or {}
            raise ArmError(exc.message or str(exc), status=exc.status_code,
                           retry_after=_retry_after_seconds(headers.get("Retry-After"))) from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise ArmError(f"{type(exc).__name__}: {exc.message}") from exc
        except AzureError as exc:
            raise ArmError(f"{type(exc).__name__}: {exc.message}") from exc

    async def get_site_config(self) -> SiteState:
        t = self.target
        async with self._translate():
            cfg = await self._client.web_apps.get_configuration(t.resource_group, t.site_name)
        return SiteState(cfg.minimum_elastic_instance_count, cfg.pre_warmed_instance_count)

    async def patch_site_config(self, *, always_ready: int | None = None,
                                pre_warmed: int | None = None) -> None:
        from azure.mgmt.web.models import SiteConfig, SiteConfigResource

        # Fields left None are not sent: the PATCH carries only what differs, where a PUT
        # would replace the whole site config.
        body = SiteConfigResource(properties=SiteConfig(
            minimum_elastic_instance_count=always_ready, pre_warmed_instance_count=pre_warmed))
        t = self.target
        async with self._translate():
            await self._client.web_apps.update_configuration(t.resource_group, t.site_name, body)

    async def _plan(self) -> tuple[str, str]:
        if self._plan_ref is None:
            t = self.target
            async with self._translate():
                site = await self._client.web_apps.get(t.resource_group, t.site_name)
            self._plan_ref = _parse_server_farm_id(site.server_farm_id or "")
        return self._plan_ref

    async def get_plan(self) -> PlanState:
        rg, name = await self._plan()
        async with self._translate():
            plan = await self._client.app_service_plans.get(rg, name)
        capacity = plan.sku.capacity if plan.sku is not None else None
        return PlanState(name, rg, plan.maximum_elastic_worker_count, capacity)

    async def patch_plan(self, *, max_burst: int) -> None:
        from azure.mgmt.web.models import (
            AppServicePlanPatchResource,
            AppServicePlanPatchResourceProperties,
        )

        rg, name = await self._plan()
        body = AppServicePlanPatchResource(properties=AppServicePlanPatchResourceProperties(
            maximum_elastic_worker_count=max_burst))
        async with self._translate():
            await self._client.app_service_plans.update(rg, name, body)

    async def put_plan(self, *, capacity: int) -> bool:
        rg, name = await self._plan()
        async with self._translate():
            # The PATCH model has no sku, so the plan minimum needs GET + PUT of the whole plan.
            plan = await self._client.app_service_plans.get(rg, name)
            if plan.sku is None:
                raise ArmError(f"plan {name} has no sku to set a minimum on", status=400)
            if plan.sku.capacity == capacity:
                return False
            plan.sku.capacity = capacity
            poller = await self._client.app_service_plans.begin_create_or_update(rg, name, plan)
            await poller.result()
        return True


def _parse_server_farm_id(farm_id: str) -> tuple[str, str]:
    """(resource group, plan name) from /subscriptions/…/resourceGroups/RG/…/serverfarms/NAME."""
    parts = farm_id.strip("/").split("/")
    lower = [p.lower() for p in parts]
    try:
        rg = parts[lower.index("resourcegroups") + 1]
        name = parts[lower.index("serverfarms") + 1]
    except (ValueError, IndexError):
        raise ArmError(f"the site has no usable serverFarmId ({farm_id!r}); "
                       "set SCALE_PLAN_NAME", status=400) from None
    return rg, name


class ClosableGateway(ArmGateway, Protocol):
    async def close(self) -> None: ...


GatewayFactory = Callable[[Settings, Target], ClosableGateway]
_gateway_factory: GatewayFactory = AzureArmGateway.from_settings


def set_gateway_factory(factory: GatewayFactory | None) -> None:
    """Make ticks that are not handed a gateway build theirs this way (tests, the dev host).

    None restores the default: azure-mgmt-web with DefaultAzureCredential.
    """
    global _gateway_factory
    _gateway_factory = factory or AzureArmGateway.from_settings


# --------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries inside one tick; the defaults fit well inside a 5-minute timer."""

    attempts: int = 4
    backoff_base: float = 1.0
    backoff_max: float = 10.0
    # A Retry-After longer than this is not worth holding the tick for: the next tick comes.
    retry_after_max: float = 30.0
    # All retry waits and requests of one tick together stop being retried after this.
    budget_seconds: float = 120.0


T = TypeVar("T")


class _Caller:
    def __init__(self, policy: RetryPolicy, sleep: Callable[[float], Awaitable[None]]) -> None:
        self.policy = policy
        self.sleep = sleep
        self.deadline = time.monotonic() + policy.budget_seconds

    async def __call__(self, fn: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                return await fn()
            except ArmError as err:
                attempt += 1
                if not err.retryable or attempt >= self.policy.attempts:
                    raise
                if err.status == 429 and err.retry_after is not None:
                    delay = err.retry_after
                    if delay > self.policy.retry_after_max:
                        raise
                else:
                    step = self.policy.backoff_base * 2 ** (attempt - 1)
                    # Jitter keeps a retried burst from landing on ARM in lockstep.
                    delay = min(self.policy.backoff_max, step) * random.uniform(0.5, 1.0)
                if time.monotonic() + delay > self.deadline:
                    raise
                await self.sleep(delay)


# --------------------------------------------------------------------------- the tick


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


def check_schedule(settings: Settings) -> ScheduleError | None:
    """Validate SCALE_SCHEDULE now (start-up) and log a bad one; never raises."""
    try:
        parse_schedule(settings.scale_schedule, zone_redundant=settings.scale_zone_redundant,
                       max_burst_limit=settings.scale_max_burst_limit)
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
        return (f"; the identity needs {SITE_ROLE} on site {target.site_name} "
                f"(resource group {target.resource_group})")
    return f"; the identity needs {PLAN_ROLE} on plan {plan or '(the site plan)'}"


async def run_tick(
    settings: Settings,
    *,
    now: datetime | None = None,
    gateway: ArmGateway | None = None,
    surges: Sequence[Surge] | None = None,
    surge_table: TableClient | None = None,
    env: Mapping[str, str] | None = None,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    timeout: float = TICK_TIMEOUT_SECONDS,
) -> TickReport:
    """Bring the app to what the schedule and active surges ask for at ``now``; log once.

    ``surges`` None reads the active ones from Table Storage (``surge_table`` or the
    runtime's SURGE_TABLE client). ``gateway`` None builds one for this app from settings.
    The whole tick is cut off after ``timeout`` seconds, and still logs what it got done.
    """
    started = time.monotonic()
    at = (now or datetime.now(UTC)).astimezone(UTC)
    report = TickReport(at=at, dry_run=settings.scale_dry_run)
    opened: list[ClosableGateway] = []
    try:
        async with asyncio.timeout(timeout):
            await _tick(report, settings, at, gateway, opened, surges, surge_table, env,
                        retry or RetryPolicy(), sleep)
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
    level = {"applied": logging.INFO, "unchanged": logging.INFO, "dry_run": logging.INFO,
             "partial": logging.WARNING}.get(report.outcome, logging.ERROR)
    LOG.log(level, "%s", report.log_line())
    return report


def _broken_outcome(report: TickReport) -> str:
    if report.schedule_invalid:
        return "invalid_schedule"
    return "partial" if any(c.get("applied") for c in report.changed) else "failed"


async def _load_surges(settings: Settings, table: TableClient | None, at: datetime
                       ) -> list[Surge]:
    from shared import surge as surge_store

    if table is None:
        from shared.runtime import runtime

        table = runtime().clients.table(settings.surge_table)
    return await asyncio.wait_for(surge_store.list_active(table, now=at), timeout=10)


async def _tick(report: TickReport, settings: Settings, at: datetime,
                gateway: ArmGateway | None, opened: list[ClosableGateway],
                surges: Sequence[Surge] | None,
                surge_table: TableClient | None, env: Mapping[str, str] | None,
                retry: RetryPolicy, sleep: Callable[[float], Awaitable[None]]) -> None:
    schedule: Schedule | None = None
    try:
        schedule = parse_schedule(settings.scale_schedule,
                                  zone_redundant=settings.scale_zone_redundant,
                                  max_burst_limit=settings.scale_max_burst_limit)
    except ScheduleError as exc:
        report.schedule_invalid = True
        report.errors.append(f"invalid schedule: {exc}")

    surges_known = True
    if surges is None:
        try:
            surges = await _load_surges(settings, surge_table, at)
        except Exception as exc:
            # Without the surges, lowering always-ready could cancel one: raise only.
            surges_known = False
            surges = []
            report.errors.append(f"surges unreadable ({type(exc).__name__}: {exc}); "
                                 "always-ready will not be lowered this tick")

    try:
        target = resolve_target(settings, env)
    except TargetError as exc:
        report.errors.append(str(exc))
        report.outcome = "invalid_schedule" if schedule is None else "failed"
        return
    report.target = target.as_json()

    if gateway is None:
        built = _gateway_factory(settings, target)
        opened.append(built)
        gateway = built
    await _converge(report, settings, at, gateway, schedule, surges, surges_known, target,
                    _Caller(retry, sleep))


async def _converge(report: TickReport, settings: Settings, at: datetime,
                    gateway: ArmGateway, schedule: Schedule | None, surges: Sequence[Surge],
                    surges_known: bool, target: Target, call: _Caller) -> None:
    invalid = schedule is None

    def finish(outcome: str) -> None:
        report.outcome = "invalid_schedule" if invalid else outcome

    try:
        site = await call(gateway.get_site_config)
    except ArmError as err:
        report.errors.append(f"reading site config failed ({err.status}): {err}"
                             f"{_role_hint(err, 'site', target, '')}")
        finish("failed")
        return

    plan: PlanState | None = None
    try:
        plan = await call(gateway.get_plan)
        if report.target is not None:
            report.target["plan"] = plan.name
    except ArmError as err:
        report.errors.append(f"reading the plan failed ({err.status}): {err}"
                             f"{_role_hint(err, 'plan', target, target.plan_name)}; "
                             "plan limits were not checked")

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
        report.changed.append({"field": step.field, "from": step.before, "to": step.after,
                               "applied": False})
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
            report.errors.append(f"setting {', '.join(group)} failed ({err.status}): {err}{hint}; "
                                 "later changes were not attempted, the next tick retries")
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


def _writer(gateway: ArmGateway, kind: str, values: Mapping[str, int]
            ) -> Callable[[], Awaitable[object]]:
    if kind == "plan_max":
        return lambda: gateway.patch_plan(max_burst=values["maxBurst"])
    if kind == "site":
        return lambda: gateway.patch_site_config(always_ready=values.get("alwaysReady"),
                                                 pre_warmed=values.get("preWarmed"))
    return lambda: gateway.put_plan(capacity=values["planMinimum"])


def _desired(report: TickReport, schedule: Schedule | None, at: datetime,
             surges: Sequence[Surge], surges_known: bool, site: SiteState) -> Desired | None:
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
        return Desired(ar, site.pre_warmed, ar,
                       {"alwaysReady": why, "preWarmed": ("current",), "maxBurst": why})
    desired = desired_at(schedule, at, surges)
    if not surges_known and current_ar is not None and desired.always_ready < current_ar:
        reasons = dict(desired.reasons)
        reasons["alwaysReady"] = ("current (surges unreadable)",)
        return Desired(current_ar, desired.pre_warmed, max(desired.max_burst, current_ar),
                       reasons)
    return desired
