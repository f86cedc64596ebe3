"""The worker's one-per-process state: settings parsed once, clients created lazily.

This is the one module-level state in dipguard, and the place both wings are wired: the
dip (``shared.dip``) and the scale schedule (``shared.scale``) get everything they touch
from here, and neither imports this module. function_app.py reaches it through
``runtime()``, so tests build a Runtime of their own (real services, or a gateway to a
fake ARM) and never patch module globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from azure.data.tables.aio import TableClient
from opentelemetry.metrics import MeterProvider, get_meter_provider

from app.settings import Settings, load_settings
from shared.clients import REDIS_ERRORS, Clients
from shared.dip.breaker import Breaker
from shared.dip.cache import RedisCache
from shared.dip.customers import TableCustomerStore
from shared.dip.keys import LookupKeys
from shared.dip.lookup import CallerDefaults, DipService, DipTimeouts, InflightCap
from shared.dip.metrics import DipMetrics
from shared.dip.readmodel import LEASE_KEY, ReadModel, read_marker
from shared.dip.valve import FleetValve, LocalValve, OpenValve, RedisValve, Valve
from shared.dip.warm import Warm, warm_valve

if TYPE_CHECKING:
    # The operator app's modules load when the operator app first uses them: the lookup
    # app, whose start-up is a cold start's indexing, never does.
    from shared.scale.arm import ClosableGateway, GatewayFactory
    from shared.scale.settings import ScaleSettings
    from shared.scale.surge_api import SurgeApi
    from shared.scale.target import Target

__all__ = ["WARM_BUDGET_SECONDS", "Runtime", "azure_arm_gateway", "runtime", "set_runtime"]

# One warm run stops after this long and saves its place: well inside host.json's
# functionTimeout (30 minutes), so a timer run ends by itself; the next run resumes.
WARM_BUDGET_SECONDS = 25 * 60


def azure_arm_gateway(settings: ScaleSettings, target: Target) -> ClosableGateway:
    """azure-mgmt-web with the app's managed identity (shared.scale.arm)."""
    from shared.scale.arm import AzureArmGateway

    return AzureArmGateway.from_settings(settings, target)


@dataclass
class Runtime:
    settings: Settings
    # How a scale tick reaches ARM: azure-mgmt-web with the app's managed identity.
    gateway_factory: GatewayFactory = azure_arm_gateway
    # Where the dip's metrics go: the global provider, which shared.telemetry points at
    # Application Insights in Azure (a no-op without it); tests pass an SDK provider with
    # an in-memory reader.
    meter_provider: MeterProvider = field(default_factory=get_meter_provider)
    clients: Clients = field(init=False)
    # Warms started by a surge, which run on after the request that started them.
    _warms: set[asyncio.Task[Any]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.clients = Clients(self.settings.core)

    @cached_property
    def redis_breaker(self) -> Breaker:
        """One breaker for every use of Redis: the cache and the valve fail together."""
        s = self.settings.dip
        return Breaker(s.redis_breaker_failures, s.redis_breaker_reset_seconds)

    @cached_property
    def metrics(self) -> DipMetrics:
        """The dip's instruments (shared.dip.metrics), once per Runtime."""
        return DipMetrics(self.meter_provider)

    @cached_property
    def valve(self) -> Valve:
        s = self.settings.dip
        if s.valve_mode == "off":
            return OpenValve()
        window_s = 1.0 + s.valve_guard_ms / 1000
        return FleetValve(
            RedisValve(self.clients.redis, s.max_db_qps, window_s, slices=s.valve_pace_slices),
            LocalValve(s.local_db_qps, window_s, slices=s.valve_pace_slices),
            self.redis_breaker,
            self.metrics,
        )

    @cached_property
    def keys(self) -> LookupKeys:
        """The keyed hash every store's lookup keys are made with."""
        s = self.settings.dip
        return LookupKeys(s.lookup_key_secret, s.lookup_key_secret_previous)

    @cached_property
    def dips(self) -> DipService:
        s, core = self.settings.dip, self.settings.core
        return DipService(
            cache=RedisCache(
                self.clients.redis,
                self.redis_breaker,
                fresh_ttl_s=s.cache_ttl_seconds,
                stale_ttl_s=s.stale_ttl_seconds,
                negative_ttl_s=s.negative_ttl_seconds,
            ),
            valve=self.valve,
            store=TableCustomerStore(self.clients.table(core.customer_table)),
            keys=self.keys,
            timeouts=DipTimeouts(s.handler_deadline_ms, s.db_timeout_ms, core.redis_timeout_ms),
            defaults=CallerDefaults(region=s.default_region, degraded_tier=s.degraded_tier),
            inflight=(
                None
                if s.valve_mode == "off"
                # Half the valve's guard: the rest covers the instance's own delays (see
                # DipService._slot).
                else InflightCap(s.inflight_cap, slot_wait_ms=s.valve_guard_ms // 2)
            ),
            read_model=self.read_model,
            metrics=self.metrics,
            log_level=s.dip_log_level,
        )

    @cached_property
    def read_model(self) -> ReadModel:
        s = self.settings.dip
        return ReadModel(
            self.clients.redis,
            self.redis_breaker,
            max_age_s=s.read_model_max_age_seconds,
            authoritative=s.read_model_authoritative,
            metrics=self.metrics,
        )

    def warm(self) -> Warm:
        """A warm of the read model over this worker's clients, within its share."""
        s, core = self.settings.dip, self.settings.core
        redis = self.clients.bulk_redis
        return Warm(
            redis,
            self.clients.table(core.customer_table),
            warm_valve(redis, s),
            max_age_s=s.read_model_max_age_seconds,
            stale_ttl_s=s.stale_ttl_seconds,
            share=s.warm_share,
            redis_timeout_s=max(core.redis_timeout_ms / 1000, 1.0),
        )

    async def warm_for_surge(self) -> dict[str, Any]:
        """Start a warm in the background when the last complete one is older than
        SURGE_WARM_AFTER_SECONDS; say what was done. Never raises: a surge must not fail
        because the read model cannot be looked at."""
        redis = self.clients.redis
        try:
            async with asyncio.timeout(2.0):
                marker = await read_marker(redis)
                running = bool(await redis.exists(LEASE_KEY))
        except REDIS_ERRORS as exc:
            return {"started": False, "reason": f"redis unavailable: {type(exc).__name__}"}
        age = None if marker is None else round(marker.age(time.time()))
        if age is not None and age < self.settings.dip.surge_warm_after_seconds:
            return {
                "started": False,
                "lastCompleteAgeSeconds": age,
                "reason": "the last complete warm is recent enough",
            }
        if running:
            # Another warm (the timer's, or an earlier surge's) holds the lease; a second
            # would only wait for it and stop.
            return {
                "started": False,
                "lastCompleteAgeSeconds": age,
                "reason": "a warm is already running",
            }
        task = asyncio.ensure_future(self.warm().run(budget_s=WARM_BUDGET_SECONDS))
        self._warms.add(task)
        task.add_done_callback(self._warms.discard)
        return {"started": True, "lastCompleteAgeSeconds": age, "reason": None}

    async def close(self) -> None:
        """Stop background warms (they resume from their cursor) and close the clients."""
        for task in list(self._warms):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.clients.close()

    @property
    def surge_table(self) -> TableClient:
        return self.clients.table(self.settings.core.surge_table)

    @cached_property
    def surge_api(self) -> SurgeApi:
        from shared.scale.surge_api import SurgeApi

        return SurgeApi(
            self.settings.scale,
            self.surge_table,
            gateway_factory=self.gateway_factory,
            on_start=self.warm_for_surge,
        )


_current: Runtime | None = None


def runtime() -> Runtime:
    """The process's Runtime, built from the environment on first use."""
    global _current
    if _current is None:
        _current = Runtime(load_settings())
    return _current


def set_runtime(value: Runtime | None) -> None:
    """Install a Runtime (tests, the dev host) or forget it so the next call rebuilds."""
    global _current
    _current = value
