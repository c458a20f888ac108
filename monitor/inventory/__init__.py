"""The inventory: which meeting points exist, how they hang together, how to probe them."""

from monitor.inventory.load import Inventory, Point, load_inventory, parse_inventory
from monitor.inventory.model import PROBE_TYPES, Profile

__all__ = ["PROBE_TYPES", "Inventory", "Point", "Profile", "load_inventory", "parse_inventory"]
