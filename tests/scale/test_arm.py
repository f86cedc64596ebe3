"""AzureArmGateway against the HTTPS fake ARM: the plan found from the site, the token's
scope, the client timeout, Retry-After, and the PATCH bodies as the installed
azure-mgmt-web serializes them.

The gateway hands the SDK model objects; the SDK turns them into JSON. These tests read
that JSON off the wire (the HTTPS fake ARM records each request body), so they hold the
model shape arm.py builds (`properties=...`) to the SDK that is installed: models that
flatten those fields serialize them away, or send defaults in their place.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest

from shared.scale.arm import ArmError, AzureArmGateway, _retry_after_seconds
from shared.scale.target import Target
from tests.support.fake_arm import SUBSCRIPTION, FakeArm, StubCredential
from tests.support.ticks import TUESDAY_PROMO, make_settings, tick


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


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert _retry_after_seconds("12") == 12.0
    assert _retry_after_seconds(None) is None
    assert _retry_after_seconds("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (_retry_after_seconds(later) or 0) <= 30


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


# --------------------------------------------------------------------------- PATCH bodies


@pytest.fixture
async def named_plan_gateway(
    fake: FakeArm, credential: StubCredential
) -> AsyncIterator[AzureArmGateway]:
    # The plan is named, so patching it sends the PATCH alone (no GET of the site first).
    target = Target(SUBSCRIPTION, fake.resource_group, fake.site, plan_name=fake.plan)
    gw = AzureArmGateway(
        target,
        credential,
        endpoint=fake.endpoint,
        connection_verify=fake.ca_path,
        timeout=1.0,
    )
    async with gw:
        yield gw


def sent(fake: FakeArm) -> list[tuple[str, str, Any]]:
    return [
        (r.method, r.path.removeprefix(f"/subscriptions/{SUBSCRIPTION}"), r.body)
        for r in fake.requests
    ]


SITE_CONFIG = "/resourceGroups/rg-dip/providers/Microsoft.Web/sites/dip-app/config/web"
PLAN = "/resourceGroups/rg-dip/providers/Microsoft.Web/serverfarms/dip-plan"


@pytest.mark.parametrize(
    ("always_ready", "pre_warmed", "properties"),
    [
        (5, 2, {"minimumElasticInstanceCount": 5, "preWarmedInstanceCount": 2}),
        (3, None, {"minimumElasticInstanceCount": 3}),
        (None, 0, {"preWarmedInstanceCount": 0}),  # a zero is sent, not dropped
    ],
    ids=["both", "always-ready", "pre-warmed-zero"],
)
async def test_the_site_config_patch_carries_exactly_the_counts_given(
    fake: FakeArm,
    gateway: AzureArmGateway,
    always_ready: int | None,
    pre_warmed: int | None,
    properties: dict[str, int],
) -> None:
    await gateway.patch_site_config(always_ready=always_ready, pre_warmed=pre_warmed)
    # Nothing else: a default the model filled in would overwrite the live site config.
    assert sent(fake) == [("PATCH", SITE_CONFIG, {"properties": properties})]


async def test_the_plan_patch_carries_the_maximum_elastic_worker_count(
    fake: FakeArm, named_plan_gateway: AzureArmGateway
) -> None:
    await named_plan_gateway.patch_plan(max_burst=60)
    assert sent(fake) == [("PATCH", PLAN, {"properties": {"maximumElasticWorkerCount": 60}})]
