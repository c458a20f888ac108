"""The lab's address plan: one loopback address per meeting point, in inventory order.

What a caller may rely on:

- Point *i* of the inventory (tree order, as :attr:`Inventory.points` iterates)
  gets ``127.20.0.1 + i``: 450 Hanoi points span ``127.20.0.1`` to
  ``127.20.1.194``, 10,000 points end at ``127.20.39.16``.
- Linux routes all of ``127.0.0.0/8`` to the loopback interface, so every such
  address can be bound and answers ICMP echo without any ``ip addr add``.
- :func:`lab_inventory` changes nothing but the hosts; ids, names, profiles and
  the tree are kept, so the monitor probing the mapped inventory sees the same
  points the operator configured.
"""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address, IPv4Network

from monitor.errors import ConfmonError
from monitor.inventory import Inventory

__all__ = ["LAB_BASE", "LAB_NETWORK", "lab_host", "lab_inventory"]

#: address of the first point
LAB_BASE = IPv4Address("127.20.0.1")
#: the loopback block the plan draws from
LAB_NETWORK = IPv4Network("127.0.0.0/8")


def lab_host(index: int, base: IPv4Address = LAB_BASE) -> str:
    """The loopback address of the ``index``-th point (0-based, inventory order)."""
    capacity = int(LAB_NETWORK.broadcast_address) - int(base)
    if not 0 <= index < capacity:
        raise ConfmonError(
            f"lab point index {index} is outside the loopback plan (0..{capacity - 1})"
        )
    return str(base + index)


def lab_inventory(inv: Inventory, base: IPv4Address = LAB_BASE) -> Inventory:
    """A copy of ``inv`` whose points listen on their lab addresses instead of their real hosts.

    ``base`` moves the whole plan (tests use another block than a running demo's).
    """
    points = {
        pid: dataclasses.replace(point, host=lab_host(i, base))
        for i, (pid, point) in enumerate(inv.points.items())
    }
    return dataclasses.replace(inv, points=points)
