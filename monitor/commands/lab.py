"""``confmon lab``: only the simulated points, for tests, demos and operator training.

``add_parser(subparsers)`` registers the command on the main parser; the handler
returns the exit code (0 after Ctrl-C or SIGTERM) and reports every user mistake
as a one-line :class:`~monitor.errors.UsageError` or
:class:`~monitor.errors.ConfmonError`, as the rest of the command line does.
"""

from __future__ import annotations

import argparse
import asyncio
import fnmatch
import signal
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from monitor.commands.argtypes import port_number, whole_number
from monitor.commands.common import add_lab_base_option, parse_lab_base, write_output
from monitor.errors import UsageError
from monitor.exiting import run_service
from monitor.inventory import Inventory
from monitor.lab.impairment import Impairment

if TYPE_CHECKING:
    from monitor.lab.lab import Lab

__all__ = ["add_parser", "parse_impair_options"]

_DEFAULT_CONTROL_PORT = (
    9109  # = monitor.lab.control.DEFAULT_CONTROL_PORT, without importing aiohttp
)


def add_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Register ``confmon lab`` on the main parser's subcommands."""
    p = subparsers.add_parser(
        "lab",
        help="only the simulated meeting points (for tests, demos, operator training)",
        description=(
            "Simulate every point of an inventory on its own loopback address (from --lab-base "
            "upwards, in inventory order): SIP OPTIONS over UDP and TCP, the UDP media echo "
            "and the HTTP status page, as the point's profile says; ICMP is answered by the "
            "kernel. Impairments can be set at start (--impair) and changed while running "
            "through the control API. Runs until Ctrl-C or SIGTERM."
        ),
        epilog=(
            "Impairment keys: delay:40ms, jitter:10ms (uniform ±; dist:normal for a normal "
            "distribution), loss:5%, down, sip:503, http:503. An impairment of a point also "
            "applies to the points below it. POINT may be a pattern such as 'ba-dinh*'."
        ),
    )
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="inventory YAML")
    p.add_argument(
        "--seed",
        type=whole_number(),
        metavar="N",
        help="seed the random losses and jitter (repeatable)",
    )
    add_lab_base_option(p, "two labs")
    p.add_argument(
        "--impair",
        action="append",
        default=[],
        metavar="POINT=SPEC",
        help="impair a point from the start, e.g. ba-dinh=delay:40ms,jitter:10ms,loss:5%%",
    )
    p.add_argument(
        "--control-port",
        type=port_number,
        default=_DEFAULT_CONTROL_PORT,
        metavar="PORT",
        help=f"control API on 127.0.0.1 (default {_DEFAULT_CONTROL_PORT}; 0 turns it off)",
    )
    p.add_argument("--list", action="store_true", help="also print every point's address")
    p.add_argument(
        "--write-inventory",
        metavar="FILE.yaml",
        help="write the inventory with the lab's addresses, for 'confmon run -c' elsewhere",
    )
    p.add_argument("--force", action="store_true", help="overwrite --write-inventory's file")
    p.set_defaults(handler=run)


def parse_impair_options(options: list[str], inv: Inventory) -> list[tuple[str, Impairment]]:
    """``POINT=SPEC`` options -> (point id, impairment), patterns expanded; UsageError if bad."""
    out: list[tuple[str, Impairment]] = []
    for option in options:
        target, eq, spec = option.partition("=")
        target = target.strip()
        if not eq or not target:
            raise UsageError(f"--impair {option!r}: write POINT=SPEC, e.g. ba-dinh=delay:40ms")
        try:
            impairment = Impairment.parse(spec)
        except ValueError as exc:
            raise UsageError(f"--impair {option!r}: {exc}") from None
        if any(c in target for c in "*?["):
            ids = [pid for pid in inv.points if fnmatch.fnmatchcase(pid, target)]
        else:
            ids = [target] if target in inv.points else []
        if not ids:
            raise UsageError(f"--impair {option!r}: no point matches {target!r} in {inv.file}")
        out += [(pid, impairment) for pid in ids]
    return out


def run(args: argparse.Namespace) -> int:
    """The handler of ``confmon lab``."""
    from monitor.inventory import load_inventory
    from monitor.lab.addresses import lab_inventory

    inv = lab_inventory(load_inventory(args.config), parse_lab_base(args.lab_base))
    impairments = parse_impair_options(args.impair, inv)
    if args.write_inventory:
        _write_inventory(inv, args.write_inventory, args.force, args.config)
    return run_service(_serve(inv, impairments, args))


def _write_inventory(inv: Inventory, output: str, force: bool, source: str) -> None:
    from monitor.inventory.writer import to_yaml

    header = f"# {source} with the addresses of 'confmon lab' (127.20.0.1 upwards).\n"
    # beside the file and renamed over it: a full disk leaves no empty or truncated file
    write_output(to_yaml(inv, header), output, force)


async def _serve(
    inv: Inventory, impairments: list[tuple[str, Impairment]], args: argparse.Namespace
) -> int:
    from monitor.lab.lab import Lab

    started = time.perf_counter()
    lab = Lab(inv, seed=args.seed)
    for pid, impairment in impairments:
        lab.set_impairment(pid, impairment)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        async with lab:
            control = None
            if args.control_port:
                from monitor.lab.control import ControlServer

                control = ControlServer(lab, port=args.control_port)
                await control.start()
            try:
                if args.list:
                    for point in inv.points.values():
                        print(f"{point.id}\t{point.host}")
                for line in summary(lab, control.url if control else None):
                    print(line)
                print(f"ready in {time.perf_counter() - started:.2f} s; Ctrl-C stops", flush=True)
                await stop.wait()
            finally:
                if control is not None:
                    await control.stop()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    stats = lab.stats()
    print(f"stopped: {stats['replies']} replies sent, {stats['dropped']} dropped", flush=True)
    return 0


def summary(lab: Lab, control_url: str | None) -> list[str]:
    """What the lab listens on, in a few lines: the address plan, ports, impairments."""
    inv = lab.inventory
    hosts = [p.host for p in inv.points.values()]
    lines = [
        f"confmon lab: {len(hosts)} points of {inv.file} on {hosts[0]} .. {hosts[-1]} "
        "(one loopback address per point, in inventory order)"
    ]
    groups: dict[tuple[str, int], tuple[set[str], set[str], set[str]]] = defaultdict(
        lambda: (set(), set(), set())
    )
    for ep in lab.endpoints:
        transports, points, paths = groups[(ep.service, ep.port)]
        transports.add(ep.transport)
        points.add(ep.point)
        if ep.path:
            paths.add(ep.path)
    for (service, port), (transports, points, paths) in groups.items():
        extra = f"  GET {', '.join(sorted(paths))}" if paths else ""
        proto = "+".join(sorted(transports, reverse=True))
        lines.append(f"  {service:<6} {f'{port}/{proto}':<14} {len(points):>6} points{extra}")
    lines.append(
        f"  {'icmp':<6} {'kernel':<14} {len(hosts):>6} points  (always answers: impairments do not apply)"
    )
    for what, count in lab.unsimulated.items():
        lines.append(f"  not simulated: {what} status pages of {count} points (plain http only)")
    for pid, impairment in lab.impairments().items():
        below = len(inv.descendants(pid))
        more = f" (and the {below} points below it)" if below else ""
        lines.append(f"impaired: {pid}: {impairment.describe()}{more}")
    if control_url:
        lines.append(
            f"control: {control_url}/impairments  (GET; PUT, PATCH, DELETE /impairments/POINT)"
        )
    else:
        lines.append("control: off")
    return lines
