"""The ``confmon`` command line.

Every command exits 0 when it did its job, 1 on a runtime failure and 2 on bad
usage or a bad config; errors are one line each on stderr (``--debug`` shows
the traceback instead).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console

from monitor import __version__
from monitor.errors import ConfigError, ConfmonError, UsageError

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse, but bad usage is a :class:`UsageError` (one line, exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def _check_config(args: argparse.Namespace) -> int:
    from monitor.inventory import load_inventory
    from monitor.inventory.summary import print_summary, summarise

    inv = load_inventory(args.file)
    if args.json:
        print(json.dumps(summarise(inv), ensure_ascii=False, indent=2))
    else:
        print_summary(inv, Console())
    return 0


def _add_logging_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-format", choices=("text", "json"), default="text", help="log line format")
    p.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="log verbosity",
    )


def _write_output(text: str, output: str | None, force: bool) -> None:
    if output is None or output == "-":
        sys.stdout.write(text)
        return
    path = Path(output)
    if path.exists() and not force:
        raise UsageError(f"{output} exists; pass --force to overwrite it")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfmonError(f"cannot write {output}: {exc.strerror}") from None


def _inventory_import(args: argparse.Namespace) -> int:
    from monitor.inventory.csvimport import import_csv
    from monitor.inventory.writer import to_yaml

    inv = import_csv(args.file, base=args.base)
    header = f"# Imported from {Path(args.file).name} by confmon inventory import.\n"
    _write_output(to_yaml(inv, header), args.output, args.force)
    if args.output not in (None, "-"):
        print(f"wrote {args.output}: {len(inv.points)} points", file=sys.stderr)
    return 0


def _inventory_export(args: argparse.Namespace) -> int:
    from monitor.inventory import load_inventory
    from monitor.inventory.writer import to_csv

    _write_output(to_csv(load_inventory(args.file)), args.output, args.force)
    return 0


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from monitor.inventory import load_inventory
    from monitor.logs import setup_logging
    from monitor.runner import RunOptions, parse_listen, run_monitor

    inv = load_inventory(args.config)
    opts = RunOptions(
        config=Path(args.config),
        listen=parse_listen(args.listen),
        state_db=Path(args.state_db) if args.state_db else None,
        token=args.api_token or os.environ.get("CONFMON_API_TOKEN") or None,
        icmp=not args.no_icmp,
    )
    setup_logging(args.log_format, args.log_level)
    return asyncio.run(run_monitor(inv, opts))


def _probe(args: argparse.Namespace) -> int:
    import asyncio

    from monitor.probecmd import run_probe

    return asyncio.run(run_probe(args.type, args.target, args.option, args.json))


def _dashboard(args: argparse.Namespace) -> int:
    import asyncio
    import zoneinfo

    from monitor.dashboard.app import run_dashboard, write_snapshot

    try:
        zoneinfo.ZoneInfo(args.tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"--tz {args.tz!r} is not a known time zone (e.g. Asia/Ho_Chi_Minh)"
        ) from None
    token = args.token or os.environ.get("CONFMON_API_TOKEN") or None
    if not 0.1 <= args.refresh <= 20:  # also false for NaN
        raise UsageError(f"--refresh {args.refresh:g}: choose between 0.1 and 20 frames per second")
    if args.snapshot:
        asyncio.run(
            write_snapshot(
                args.url,
                Path(args.snapshot),
                token=token,
                width=args.width,
                height=args.height,
                tz=args.tz,
            )
        )
        print(f"wrote {args.snapshot}", file=sys.stderr)
        return 0
    asyncio.run(run_dashboard(args.url, token=token, refresh_hz=args.refresh, tz=args.tz))
    return 0


def _rollcall(args: argparse.Namespace) -> int:
    import asyncio

    from monitor.inventory import load_inventory
    from monitor.rollcall import run_rollcall

    inv = load_inventory(args.config)
    try:
        return asyncio.run(run_rollcall(inv, args.format, icmp=not args.no_icmp))
    except ConfmonError as exc:
        if "ICMP" in str(exc) or "ping" in str(exc):
            raise ConfmonError(f"{exc} (or run with --no-icmp)") from None
        raise


def _duration(value: float | None) -> float | None:
    if value is not None and not 0 < value < 1e9:  # also false for NaN and infinity
        raise UsageError(f"--duration {value:g}: give a positive number of seconds")
    return value


def _lab_base(text: str) -> ipaddress.IPv4Address:
    try:
        base = ipaddress.IPv4Address(text)
    except ValueError:
        raise UsageError(f"--lab-base {text!r} is not an IPv4 address") from None
    if not base.is_loopback:
        raise UsageError(f"--lab-base {text}: the lab listens on loopback only (127.0.0.0/8)")
    return base


def _demo(args: argparse.Namespace) -> int:
    import asyncio

    from monitor.demo import DEFAULT_CONFIG, DemoOptions, run_demo
    from monitor.logs import setup_logging
    from monitor.runner import parse_listen

    if args.no_dashboard:
        setup_logging("text", "warning")
    else:
        setup_logging("text", "critical")  # the dashboard owns the screen
    opts = DemoOptions(
        config=Path(args.config) if args.config else DEFAULT_CONFIG,
        scenario=args.scenario,
        listen=parse_listen(args.listen),
        dashboard=not args.no_dashboard,
        seed=args.seed,
        duration=_duration(args.duration),
        lab_base=_lab_base(args.lab_base),
    )
    if not opts.config.exists():
        raise UsageError(f"{opts.config} not found; run from a confmon checkout or pass -c FILE")
    return asyncio.run(run_demo(opts))


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = _Parser(
        prog="confmon",
        description=(
            "Connection monitor for hybrid conferences: probes remote meeting points "
            "(ICMP, TCP, HTTP, SIP OPTIONS, UDP media) and reports their health."
        ),
        epilog="Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad config.",
    )
    parser.add_argument("--version", action="version", version=f"confmon {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks instead of one-line errors"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "check-config",
        help="validate an inventory and summarise it (exit 0 valid, 2 invalid)",
        description="Validate an inventory file; print a summary, or every problem as file:line: field: message.",
    )
    p.add_argument("file", metavar="FILE", help="inventory YAML, e.g. configs/hanoi.yaml")
    p.add_argument("--json", action="store_true", help="print the summary as JSON for scripts")
    p.set_defaults(handler=_check_config)

    p = sub.add_parser(
        "run",
        help="single-node monitor: probes, health, /metrics and API, event log",
        description=(
            "Probe every point of the inventory, keep their health, and serve /metrics, the "
            "JSON API (/api/v1/...) and an SSE stream. SIGHUP or POST /-/reload re-reads the "
            "config; SIGINT/SIGTERM stop cleanly."
        ),
    )
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="inventory YAML")
    p.add_argument(
        "--listen",
        default="127.0.0.1:9108",
        metavar="HOST:PORT",
        help="HTTP address (default: %(default)s)",
    )
    p.add_argument(
        "--state-db",
        metavar="PATH",
        help="SQLite event log (default: $XDG_STATE_HOME/confmon/<config name>.sqlite3)",
    )
    p.add_argument(
        "--api-token",
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' on /api and /-/ (or set CONFMON_API_TOKEN)",
    )
    p.add_argument(
        "--no-icmp", action="store_true", help="do not run ICMP probes (no raw/ping socket needed)"
    )
    _add_logging_options(p)
    p.set_defaults(handler=_run)

    p = sub.add_parser(
        "probe",
        help="run one probe now and print every phase (troubleshooting)",
        description=(
            "Run one probe against one target and print every phase it went through. "
            "Exit 0 when it succeeded, 1 when it failed."
        ),
        epilog=(
            "examples:  confmon probe icmp 127.0.0.1 -o count=20  |  confmon probe sip 127.20.0.1:5060 "
            "-o transport=tcp  |  confmon probe http https://mcu.example/status  |  "
            "confmon probe media 127.20.0.1:7078 -o packets=200"
        ),
    )
    p.add_argument(
        "type",
        choices=("icmp", "tcp", "http", "sip", "media"),
        metavar="TYPE",
        help="icmp, tcp, http, sip or media",
    )
    p.add_argument("target", metavar="TARGET", help="host, host:port, [v6]:port, or a URL for http")
    p.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a probe setting as in a profile, e.g. -o timeout=2s -o count=10 (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=_probe)

    p = sub.add_parser(
        "demo",
        help="the whole thing on loopback: 450 simulated Hanoi points, monitor, API, dashboard",
        description=(
            "Start the lab (the 450 Hanoi meeting points simulated on loopback), the monitor, "
            "/metrics and the API on 127.0.0.1:9108, and the live dashboard, in one process. "
            "--scenario plays a scripted incident from configs/scenarios/. Ctrl-C exits."
        ),
        epilog="scenarios: uplink-loss, rising-jitter, flapping, lost-agent, recovery (or a path to a YAML file)",
    )
    p.add_argument("--scenario", metavar="NAME", help="play a scripted incident, e.g. uplink-loss")
    p.add_argument(
        "-c", "--config", metavar="FILE", help="inventory to simulate (default: configs/hanoi.yaml)"
    )
    p.add_argument(
        "--listen",
        default="127.0.0.1:9108",
        metavar="HOST:PORT",
        help="API address (default: %(default)s)",
    )
    p.add_argument(
        "--no-dashboard",
        action="store_true",
        help="headless: print one line per state change instead",
    )
    p.add_argument("--seed", type=int, help="seed the lab's random loss and jitter")
    p.add_argument(
        "--lab-base",
        default="127.20.0.1",
        metavar="ADDRESS",
        help="first loopback address of the simulated points (default: %(default)s); "
        "another block lets two demos run side by side",
    )
    p.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="stop after this long (default: until Ctrl-C)",
    )
    p.set_defaults(handler=_demo)

    p = sub.add_parser(
        "rollcall",
        help="one readiness pass over every point now; exit 0 only if readiness >= target",
        description=(
            "Probe every point once, now, with a progress bar; list the points that are not "
            "ready, grouped by district, and the readiness. Exit 0 when readiness reaches "
            "monitor.readiness_target, 1 when it does not, 2 for a bad config."
        ),
    )
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="inventory YAML")
    p.add_argument(
        "--format", choices=("table", "json", "csv"), default="table", help="output format"
    )
    p.add_argument("--no-icmp", action="store_true", help="do not run ICMP probes")
    p.set_defaults(handler=_rollcall)

    p = sub.add_parser(
        "dashboard",
        help="the live terminal dashboard, attached to a running run/server",
        description=(
            "Show the live state of every point: districts as rows of commune cells, the points "
            "that need attention, and the latest events. Reads the monitor's API and event "
            "stream; shows a banner and reconnects by itself when the monitor is unreachable. "
            "Ctrl-C exits."
        ),
    )
    p.add_argument(
        "--url", default="http://127.0.0.1:9108", help="the monitor's API (default: %(default)s)"
    )
    p.add_argument("--token", help="bearer token, if the API needs one (or set CONFMON_API_TOKEN)")
    p.add_argument(
        "--refresh", type=float, default=2.0, metavar="HZ", help="frames per second (default: 2)"
    )
    p.add_argument(
        "--tz", default="Asia/Ho_Chi_Minh", help="time zone of the clock (default: %(default)s)"
    )
    p.add_argument(
        "--snapshot",
        metavar="FILE",
        help="write one frame to FILE (.svg, .html or .txt) and exit, for reports and bug reports",
    )
    p.add_argument(
        "--width", type=int, default=120, help="snapshot width in columns (default: 120)"
    )
    p.add_argument("--height", type=int, default=40, help="snapshot height in rows (default: 40)")
    p.set_defaults(handler=_dashboard)

    from monitor.lab.cli import add_parser as add_lab_parser

    add_lab_parser(sub)

    inv = sub.add_parser(
        "inventory",
        help="import an operator's spreadsheet (CSV) into inventory YAML, or export one",
        description="Convert between an operator's spreadsheet (CSV) and inventory YAML.",
    )
    inv_sub = inv.add_subparsers(
        dest="action", metavar="ACTION", parser_class=_Parser, required=True
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
    p.set_defaults(handler=_inventory_import)
    p = inv_sub.add_parser(
        "export",
        help="YAML -> CSV",
        description="Write an inventory's points as the CSV that 'inventory import' reads.",
    )
    p.add_argument("file", metavar="FILE.yaml")
    p.add_argument("-o", "--output", metavar="FILE.csv", help="write here instead of stdout")
    p.add_argument("--force", action="store_true", help="overwrite --output if it exists")
    p.set_defaults(handler=_inventory_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        handler: Handler | None = getattr(args, "handler", None)
        if handler is None:
            build_parser().print_help()
            return 2
        return handler(args)
    except ConfigError as exc:
        if debug:
            raise
        for line in exc.lines():
            print(line, file=sys.stderr)
        return exc.exit_code
    except ConfmonError as exc:
        if debug:
            raise
        print(f"confmon: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
