"""Fixtures for the lab tests: a small inventory on fresh ports and a running lab."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monitor.inventory import Inventory
from monitor.lab import Lab
from tests.lab.clients import write_inventory


@pytest.fixture
def inventory(tmp_path: Path) -> tuple[Inventory, dict[str, int]]:
    """The test inventory (4 points, lab addresses 127.20.0.1-4) and its ports."""
    return write_inventory(tmp_path)


@pytest.fixture
async def lab(inventory: tuple[Inventory, dict[str, int]]) -> AsyncIterator[Lab]:
    """A running lab of the test inventory, seeded."""
    async with Lab(inventory[0], seed=7) as running:
        yield running


@pytest.fixture
def ports(inventory: tuple[Inventory, dict[str, int]]) -> dict[str, int]:
    """The test inventory's ports: sip, media, http."""
    return inventory[1]
