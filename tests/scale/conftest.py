"""Fixtures the scale tests share: the HTTPS fake ARM and a gateway to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

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
