"""The few ARM operations a scale tick needs, behind a narrow async interface.

``ArmGateway`` is what the tick and the surge API see; ``AzureArmGateway`` implements it
over azure-mgmt-web's async client. A ``GatewayFactory`` builds one per tick for the app
to scale; the Runtime owns the factory, so tests hand in one that points at a fake ARM.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Protocol

from shared.scale.settings import ScaleSettings
from shared.scale.target import Target

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

__all__ = [
    "ARM_REQUEST_TIMEOUT_SECONDS",
    "ArmError",
    "ArmGateway",
    "AzureArmGateway",
    "ClosableGateway",
    "GatewayFactory",
    "PlanState",
    "SiteState",
]

# Every single ARM request gives up after this long; a hung connection must not eat the
# timer period (5 minutes by default).
ARM_REQUEST_TIMEOUT_SECONDS = 15.0


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

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status == 429 or self.status >= 500


class ArmGateway(Protocol):
    """The few ARM operations a tick needs, so the decisions can be tested without HTTP."""

    async def get_site_config(self) -> SiteState: ...

    async def patch_site_config(
        self, *, always_ready: int | None = None, pre_warmed: int | None = None
    ) -> None: ...

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

    def __init__(
        self,
        target: Target,
        credential: AsyncTokenCredential,
        *,
        endpoint: str = "https://management.azure.com",
        connection_verify: bool | str = True,
        timeout: float = ARM_REQUEST_TIMEOUT_SECONDS,
        owns_credential: bool = False,
    ) -> None:
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
            (target.resource_group, target.plan_name) if target.plan_name else None
        )

    @classmethod
    def from_settings(cls, settings: ScaleSettings, target: Target) -> AzureArmGateway:
        from azure.identity.aio import DefaultAzureCredential

        # The app's managed identity in Azure; developer credentials locally. One per tick:
        # a token every five minutes is cheap, and nothing is left open between ticks.
        return cls(
            target, DefaultAzureCredential(), endpoint=settings.arm_endpoint, owns_credential=True
        )

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
            raise ArmError(
                exc.message or str(exc),
                status=exc.status_code,
                retry_after=_retry_after_seconds(headers.get("Retry-After")),
            ) from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise ArmError(f"{type(exc).__name__}: {exc.message}") from exc
        except AzureError as exc:
            raise ArmError(f"{type(exc).__name__}: {exc.message}") from exc

    async def get_site_config(self) -> SiteState:
        t = self.target
        async with self._translate():
            cfg = await self._client.web_apps.get_configuration(t.resource_group, t.site_name)
        return SiteState(cfg.minimum_elastic_instance_count, cfg.pre_warmed_instance_count)

    async def patch_site_config(
        self, *, always_ready: int | None = None, pre_warmed: int | None = None
    ) -> None:
        from azure.mgmt.web.models import SiteConfig, SiteConfigResource

        # Fields left None are not sent: the PATCH carries only what differs, where a PUT
        # would replace the whole site config.
        body = SiteConfigResource(
            properties=SiteConfig(
                minimum_elastic_instance_count=always_ready, pre_warmed_instance_count=pre_warmed
            )
        )
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
        body = AppServicePlanPatchResource(
            properties=AppServicePlanPatchResourceProperties(maximum_elastic_worker_count=max_burst)
        )
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
        raise ArmError(
            f"the site has no usable serverFarmId ({farm_id!r}); set SCALE_PLAN_NAME", status=400
        ) from None
    return rg, name


class ClosableGateway(ArmGateway, Protocol):
    async def close(self) -> None: ...


GatewayFactory = Callable[[ScaleSettings, Target], ClosableGateway]
