"""The PATCH bodies AzureArmGateway sends, as the installed azure-mgmt-web serializes them.

The gateway hands the SDK model objects; the SDK turns them into JSON. These tests read
that JSON off the wire (the HTTPS fake ARM records each request body), so they hold the
model shape arm.py builds (`properties=...`) to the SDK that is installed: models that
flatten those fields serialize them away, or send defaults in their place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.scale.arm import AzureArmGateway
from shared.scale.target import Target
from tests.support.fake_arm import SUBSCRIPTION, FakeArm, StubCredential


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeArm]:
    arm = FakeArm(tmp_path).start()
    yield arm
    arm.stop()


@pytest.fixture
async def gateway(fake: FakeArm) -> AsyncIterator[AzureArmGateway]:
    # The plan is named, so patching it sends the PATCH alone (no GET of the site first).
    target = Target(SUBSCRIPTION, fake.resource_group, fake.site, plan_name=fake.plan)
    gw = AzureArmGateway(
        target,
        StubCredential(),
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
    fake: FakeArm, gateway: AzureArmGateway
) -> None:
    await gateway.patch_plan(max_burst=60)
    assert sent(fake) == [("PATCH", PLAN, {"properties": {"maximumElasticWorkerCount": 60}})]
