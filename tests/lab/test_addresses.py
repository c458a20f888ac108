"""The lab's address plan: one loopback address per point, in inventory order."""

from __future__ import annotations

import dataclasses

import pytest

from monitor.errors import ConfmonError
from monitor.inventory import load_inventory
from monitor.lab import lab_host, lab_inventory
from tests.helpers import CONFIGS


def test_lab_host_counts_up_from_127_20_0_1() -> None:
    """Index 0 is 127.20.0.1, addresses carry over octets, 10,000 points end at 127.20.39.16."""
    assert lab_host(0) == "127.20.0.1"
    assert lab_host(254) == "127.20.0.255"
    assert lab_host(255) == "127.20.1.0"
    assert lab_host(9999) == "127.20.39.16"


def test_lab_host_stays_inside_loopback() -> None:
    """An index beyond 127.255.255.254 or below zero is an error, not a routable address."""
    last = (127 << 24 | 255 << 16 | 255 << 8 | 254) - (127 << 24 | 20 << 16 | 1)
    assert lab_host(last) == "127.255.255.254"
    for bad in (last + 1, -1):
        with pytest.raises(ConfmonError, match="outside the loopback plan"):
            lab_host(bad)


def test_lab_inventory_changes_only_hosts() -> None:
    """The Hanoi inventory maps to 127.20.0.1.. in order; everything else is kept."""
    inv = load_inventory(CONFIGS / "hanoi.yaml")
    lab = lab_inventory(inv)
    assert list(lab.points) == list(inv.points)
    assert [p.host for p in lab.points.values()] == [lab_host(i) for i in range(len(inv.points))]
    assert lab.points["ba-dinh"].host == "127.20.0.1"
    for pid, point in inv.points.items():
        assert dataclasses.replace(lab.points[pid], host=point.host) == point
    assert (lab.profiles, lab.settings, lab.roots, lab.file) == (
        inv.profiles,
        inv.settings,
        inv.roots,
        inv.file,
    )
    assert inv.points["ba-dinh"].host == "10.24.1.1"  # the original is untouched
