"""``confmon inventory import|export``: between an operator's spreadsheet (CSV) and YAML."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monitor.commands.common import Parser, Subparsers, write_output
from monitor.text import printable

__all__ = ["add_parser"]


def _import(args: argparse.Namespace) -> int:
    from monitor.inventory.csvimport import import_csv
    from monitor.inventory.writer import to_yaml

    inv = import_csv(args.file, base=args.base)
    # printable: a file name with a line break in it must not add lines to the YAML
    header = f"# Imported from {printable(Path(args.file).name)} by confmon inventory import.\n"
    write_output(to_yaml(inv, header), args.output, args.force)
    if args.output not in (None, "-"):
        print(f"wrote {printable(args.output)}: {len(inv.points)} points", file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    from monitor.inventory import load_inventory
    from monitor.inventory.writer import to_csv

    write_output(to_csv(load_inventory(args.file)), args.output, args.force)
    return 0


def add_parser(sub: Subparsers) -> None:
    """Register ``confmon inventory`` and its two actions."""
    inv = sub.add_parser(
        "inventory",
        help="import an operator's spreadsheet (CSV) into inventory YAML, or export one",
        description="Convert between an operator's spreadsheet (CSV) and inventory YAML.",
    )
    inv_sub = inv.add_subparsers(
        dest="action", metavar="ACTION", parser_class=Parser, required=True
    )
    p = inv_sub.add_parser(
        "import",
        help="CSV -> YAML",
        description=(
            "Read a CSV with the header id,name,parent,host,profile[,level] (UTF-8; parent empty "
            "for a district headquarters, profile empty to inherit the parent's) and write an "
            "inventory YAML. Bad rows are reported by line number and nothing is written."
        ),
    )
    p.add_argument("file", metavar="FILE.csv")
    p.add_argument("-o", "--output", metavar="FILE.yaml", help="write here instead of stdout")
    p.add_argument(
        "--base",
        metavar="FILE.yaml",
        help="take settings, thresholds and profiles from this inventory (default: built-in defaults "
        "with one 'meeting-room' profile)",
    )
    p.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    p.set_defaults(handler=_import)
    p = inv_sub.add_parser(
        "export",
        help="YAML -> CSV",
        description=(
            "Write an inventory's points as the CSV that 'inventory import' reads. A cell that "
            "a spreadsheet would take for a formula (starting with = + - @) gets a ' in front; "
            "the import takes it off again."
        ),
    )
    p.add_argument("file", metavar="FILE.yaml")
    p.add_argument("-o", "--output", metavar="FILE.csv", help="write here instead of stdout")
    p.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    p.set_defaults(handler=_export)
