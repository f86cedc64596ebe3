"""The worker's one-per-process state: settings parsed once, clients created lazily.

This is the one module-level state in dipguard, and the place both wings are wired: the
dip (``shared.dip``) and the scale schedule (``shared.scale``) get everything they touch
from here. function_app.py reaches it through ``runtime()``, so tests build a Runtime of
their own (real services, or a gateway to a fake ARM) and never patch module globals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from azure.data.tables.aio import TableClient

from shared.clients import Clients
from shared.dip.breaker import Breaker
from shared.dip.cache import RedisCache
from shared.dip.customers import TableCustomerStore
from shared.dip.lookup import DipService
from shared.dip.valve import FleetValve, LocalValve, OpenValve, RedisValve, Valve
from shared.scale.arm import AzureArmGateway, GatewayFactory
from shared.scale.surge_api import SurgeApi
from shared.settings import Settings, load_settings

__all__ = ["Runtime", "runtime", "set_runtime"]


@dataclass
class Runtime:
    settings: Settings
    # How a scale tick reaches ARM: azure-mgmt-web with the app's managed identity.
    gateway_factory: GatewayFactory = AzureArmGateway.from_settings
    clients: Clients = field(init=False)

    def __post_init__(self) -> None:
        self.clients = Clients(self.settings)

    @cached_property
    def redis_breaker(self) -> Breaker:
        """One breaker for every use of Redis: the cache and the valve fail together."""
        s = self.settings
        return Breaker(s.redis_breaker_failures, s.redis_breaker_reset_seconds)

    @cached_property
    def valve(self) -> Valve:
        s = self.settings
        if s.valve_mode == "off":
            return OpenValve()
        window_s = 1.0 + s.valve_guard_ms / 1000
        return FleetValve(
            RedisValve(self.clients.redis, s.max_db_qps, window_s),
            LocalValve(s.local_db_qps, window_s),
            self.redis_breaker,
        )

    @cached_property
    def dips(self) -> DipService:
        s = self.settings
        return DipService(
            cache=RedisCache(self.clients.redis, self.redis_breaker,
                             fresh_ttl_s=s.cache_ttl_seconds, stale_ttl_s=s.stale_ttl_seconds,
                             negative_ttl_s=s.negative_ttl_seconds),
            valve=self.valve,
            store=TableCustomerStore(self.clients.table(s.customer_table)),
            deadline_ms=s.handler_deadline_ms,
            db_timeout_ms=s.db_timeout_ms,
            redis_timeout_ms=s.redis_timeout_ms,
            max_inflight_reads=None if s.valve_mode == "off" else s.max_inflight_db_reads,
            degraded_tier=s.degraded_tier,
            region=s.default_region,
        )


    @property
    def surge_table(self) -> TableClient:
        return self.clients.table(self.settings.surge_table)

    @cached_property
    def surge_api(self) -> SurgeApi:
        return SurgeApi(self.settings, self.surge_table, gateway_factory=self.gateway_factory)


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
