"""``confmon report``: a session's event log turned into the document the operators hand in.

``confmon report --state-db PATH [-c FILE] --from TIME --to TIME -o FILE``: the suffix of
FILE picks the format (``.html``, ``.md``, ``.csv``, ``.json``), or ``--format`` does
(``-o -`` writes to standard output and needs it). Times are ``HH:MM`` (or ``HH:MM:SS``)
today, an ISO 8601 date and time (``2026-11-26T08:00``, with or without a UTC offset), or
``now``; without an offset they are read in the inventory's time zone, else in the one the
event log's monitor recorded. What each figure is: ``docs/report.md``.

Every mistake is one line and exit 2: a time that is not one, ``--from`` not before
``--to``, a window the log knows nothing about, a missing file or one that is not a
confmon event log, an unknown suffix, an output that exists (``--force``).
"""

from __future__ import annotations

import argparse
import datetime
import re
import time
import zoneinfo
from collections.abc import Callable

from monitor.commands.common import Subparsers, write_output
from monitor.errors import UsageError
from monitor.text import quoted

__all__ = ["add_parser", "parse_time"]

_CLOCK = re.compile(r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?")  # ASCII: \d also takes "٠٨"

#: the time zone when neither an inventory nor the log names one (the inventory's default)
DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"


def parse_time(text: str, option: str) -> Callable[[zoneinfo.ZoneInfo, float], float]:
    """A ``--from``/``--to`` value, checked now; the function it returns gives the Unix time
    once the time zone is known (``now`` is the time of the report).

    :class:`UsageError` for anything that is not a time."""
    value = text.strip()
    hint = (
        f"{option} {quoted(text)}: not a time; give HH:MM (today), an ISO 8601 date and time "
        "such as 2026-11-26T08:00 or 2026-11-26T08:00+07:00, or now"
    )
    if value.lower() == "now":
        return lambda tz, now: now
    clock = _CLOCK.fullmatch(value)
    if clock is not None:
        hour, minute, second = int(clock[1]), int(clock[2]), int(clock[3] or 0)
        if hour > 23 or minute > 59 or second > 59:
            raise UsageError(hint)

        def today(tz: zoneinfo.ZoneInfo, now: float) -> float:
            day = datetime.datetime.fromtimestamp(now, tz).date()
            return datetime.datetime.combine(
                day, datetime.time(hour, minute, second), tzinfo=tz
            ).timestamp()

        return today
    if not value[:1].isdigit() or not value.isascii():
        raise UsageError(hint)
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(hint) from None
    if parsed.tzinfo is not None:
        stamp = parsed.timestamp()
        return lambda tz, now: stamp
    return lambda tz, now: parsed.replace(tzinfo=tz).timestamp()


def _output_format(output: str, chosen: str | None) -> str:
    from monitor.report.formats import SUFFIXES, format_of

    if chosen is not None:
        return chosen
    if output == "-":
        raise UsageError("-o - writes to standard output: say which format with --format")
    found = format_of(output)
    if found is None:
        known = ", ".join(sorted(SUFFIXES))
        raise UsageError(
            f"-o {quoted(output)}: the file's suffix picks the format ({known}); or pass --format"
        )
    return found


def _handle(args: argparse.Namespace) -> int:
    from monitor.inventory import load_inventory
    from monitor.report.compute import compute
    from monitor.report.formats import FORMATS
    from monitor.report.source import LogFile

    # everything that can be checked without a file first
    if not args.state_db.strip():
        raise UsageError("--state-db is empty (an unset variable?): give the event log's path")
    fmt = _output_format(args.output, args.format)
    start_at = parse_time(args.start, "--from")
    end_at = parse_time(args.end, "--to")
    inventory = load_inventory(args.config) if args.config else None
    now = time.time()
    with LogFile(args.state_db) as log:
        runs = log.runs(now) or []
        named = [r for r in runs if r.timezone]
        if inventory is not None:
            tz_name = inventory.settings.timezone
        elif named:
            tz_name = named[-1].timezone
        else:
            tz_name = DEFAULT_TIMEZONE
        try:
            tz = zoneinfo.ZoneInfo(tz_name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            tz_name, tz = DEFAULT_TIMEZONE, zoneinfo.ZoneInfo(DEFAULT_TIMEZONE)
            named = []
        start, end = start_at(tz, now), end_at(tz, now)
        shown = (
            f"--from {quoted(args.start)} ({_local(start, tz)}) and --to {quoted(args.end)} "
            f"({_local(end, tz)})"
        )
        if start == end:
            raise UsageError(f"{shown} are the same time: the window is empty")
        if start > end:
            raise UsageError(f"{shown}: --from is after --to")
        if start >= now:
            raise UsageError(f"--from {quoted(args.start)} ({_local(start, tz)}) is in the future")
        extract = log.read(start, end, now)
    last = runs[-1] if runs else None
    interval: float | None
    if inventory is not None:
        title, interval = inventory.settings.name, inventory.settings.interval
    else:
        title = last.name if last is not None and last.name else "confmon"
        interval = last.interval if last is not None else None
    report = compute(
        extract,
        start,
        end,
        now=now,
        inventory=inventory,
        timezone=tz_name,
        title=title,
        interval=interval,
        timezone_assumed=inventory is None and not named,
    )
    write_output(FORMATS[fmt](report), args.output, args.force)
    return 0


def _local(t: float, tz: zoneinfo.ZoneInfo) -> str:
    return datetime.datetime.fromtimestamp(t, tz).isoformat(sep=" ", timespec="seconds")


def add_parser(sub: Subparsers) -> None:
    """Register ``confmon report``."""
    p = sub.add_parser(
        "report",
        help="the session report from an event log: HTML, Markdown, CSV or JSON",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Turn the event log of a session into its report: rooms monitored, readiness at\n"
            "the start, availability over the session (time-weighted; maintenance and time\n"
            "not monitored left out and shown apart), incidents grouped by cause (a district\n"
            "whose uplink failed is one incident with its rooms counted) with their times to\n"
            "detect and recover, degraded periods, gaps in monitoring, and each district and\n"
            "room with its availability, down time and worst RTT, loss and MOS. The log may\n"
            "be read while the monitor writes it."
        ),
        epilog=(
            "examples:\n"
            "  confmon report --state-db hanoi.sqlite3 -c configs/hanoi.yaml \\\n"
            "      --from 08:00 --to 11:30 -o session.html\n"
            "  confmon report --state-db hanoi.sqlite3 --from 2026-11-26T08:00 --to now \\\n"
            "      --format md -o -\n\n"
            "What each figure is and how it is computed: docs/report.md"
        ),
    )
    p.add_argument(
        "--state-db",
        required=True,
        metavar="PATH",
        help="the event log the monitor wrote (confmon run/server/demo --state-db)",
    )
    p.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="the inventory: every room (also one the log never heard of), names, time zone, "
        "readiness target (default: the rooms and names the log has)",
    )
    p.add_argument(
        "--from",
        dest="start",
        required=True,
        metavar="TIME",
        help="start of the session: HH:MM today, ISO 8601 (2026-11-26T08:00[+07:00]) or now",
    )
    p.add_argument(
        "--to",
        dest="end",
        default="now",
        metavar="TIME",
        help="end of the session, as --from (default: now)",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="where to write it; .html, .md, .csv or .json picks the format ('-': stdout)",
    )
    p.add_argument(
        "--format",
        choices=("html", "md", "csv", "json"),
        help="the format, whatever the suffix (needed with -o -)",
    )
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.set_defaults(handler=_handle)
