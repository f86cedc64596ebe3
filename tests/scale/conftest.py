"""Fixtures the scale tests share: the HTTPS fake ARM, a gateway to it, and the surge table
in a real Azurite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from azure.data.tables.aio import TableClient

from shared.scale.arm import AzureArmGateway
from shared.scale.target import Target
from tests.support.fake_arm import SUBSCRIPTION, FakeArm, StubCredential
from tests.support.services import Azurite


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


@pytest.fixture
async def table(azurite: Azurite, base_env: dict[str, str]) -> AsyncIterator[TableClient]:
    async with TableClient.from_connection_string(
        azurite.connection_string, table_name=base_env["SURGE_TABLE"]
    ) as client:
        yield client
