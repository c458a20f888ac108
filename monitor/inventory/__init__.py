"""The inventory: which meeting points exist, how they hang together, how to probe them.

The names below are imported on first use: the probe modules import
:mod:`monitor.inventory.types` for their settings models, and the inventory model
imports the probe registry, so this package must not load the model before a
probe module has finished loading.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.inventory.load import Inventory, Point, load_inventory, parse_inventory
    from monitor.inventory.model import PROBE_TYPES, Profile

__all__ = ["PROBE_TYPES", "Inventory", "Point", "Profile", "load_inventory", "parse_inventory"]

_HOMES = {
    "PROBE_TYPES": "monitor.inventory.model",
    "Profile": "monitor.inventory.model",
    "Inventory": "monitor.inventory.load",
    "Point": "monitor.inventory.load",
    "load_inventory": "monitor.inventory.load",
    "parse_inventory": "monitor.inventory.load",
}

if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value  # later lookups skip this function
        return value
