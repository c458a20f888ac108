"""``confmon check-config FILE``: validate an inventory and summarise it (exit 0 or 2)."""

from __future__ import annotations

import argparse
import json

from monitor.commands.common import Subparsers

__all__ = ["add_parser"]


def _handle(args: argparse.Namespace) -> int:
    from monitor.commands.common import output_console
    from monitor.inventory import load_inventory
    from monitor.inventory.summary import print_summary, summarise

    inv = load_inventory(args.file)
    if args.json:
        print(json.dumps(summarise(inv), ensure_ascii=False, indent=2))
    else:
        print_summary(inv, output_console())
    return 0


def add_parser(sub: Subparsers) -> None:
    """Register ``confmon check-config``."""
    p = sub.add_parser(
        "check-config",
        help="validate an inventory and summarise it (exit 0 valid, 2 invalid)",
        description="Validate an inventory file; print a summary, or every problem as file:line: field: message.",
    )
    p.add_argument("file", metavar="FILE", help="inventory YAML, e.g. configs/hanoi.yaml")
    p.add_argument("--json", action="store_true", help="print the summary as JSON for scripts")
    p.set_defaults(handler=_handle)
