"""``confmon dashboard``: the live terminal dashboard attached to a running monitor."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.commands.argtypes import http_base_url, number_in, time_zone, whole_number
from monitor.commands.common import Subparsers
from monitor.errors import UsageError
from monitor.text import printable, quoted

if TYPE_CHECKING:
    from monitor.dashboard.bell import Bell

__all__ = ["add_bell_options", "add_parser", "bell_from"]


#: snapshot sizes a terminal can have: below these the frame has no room for its grid
WIDTHS = (40, 1000)
HEIGHTS = (10, 1000)


def _token(text: str | None, where: str) -> str | None:
    """The bearer token: printable ASCII (an HTTP header carries nothing else), or None."""
    if text is None:
        return None
    if not text.strip():
        raise UsageError(f"{where} is empty (an unset variable?): give the token, or leave it out")
    if not text.isascii() or not text.isprintable() or " " in text.strip():
        raise UsageError(
            f"{where}: a token is printable ASCII without spaces (got {quoted(text, 20)})"
        )
    return text.strip()


def add_bell_options(p: argparse.ArgumentParser) -> None:
    """``--no-bell`` and ``--bell-rooms N``, shared by ``dashboard`` and ``demo``."""
    from monitor.dashboard.bell import DEFAULT_ROOMS

    p.add_argument(
        "--no-bell",
        action="store_true",
        help="never ring the terminal bell (by default it rings once when a district's "
        "headquarters goes down or an incident takes more than --bell-rooms rooms down)",
    )
    p.add_argument(
        "--bell-rooms",
        type=whole_number(1, 100_000),
        default=DEFAULT_ROOMS,
        metavar="N",
        help="rooms an incident must take down to ring the bell (default: %(default)s)",
    )


def bell_from(args: argparse.Namespace) -> Bell | None:
    from monitor.dashboard.bell import Bell

    return None if args.no_bell else Bell(args.bell_rooms)


def _handle(args: argparse.Namespace) -> int:
    import asyncio

    from monitor.dashboard.app import run_dashboard, write_snapshot

    token = _token(args.token, "--token")
    if token is None:
        token = _token(os.environ.get("CONFMON_API_TOKEN") or None, "CONFMON_API_TOKEN")
    if args.snapshot is not None and not args.snapshot.strip():
        raise UsageError("--snapshot is empty (an unset variable?): give the file to write")
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
        print(f"wrote {printable(args.snapshot)}", file=sys.stderr)
        return 0
    asyncio.run(
        run_dashboard(
            args.url, token=token, refresh_hz=args.refresh, tz=args.tz, bell=bell_from(args)
        )
    )
    return 0


def add_parser(sub: Subparsers) -> None:
    """Register ``confmon dashboard``."""
    p = sub.add_parser(
        "dashboard",
        help="the live terminal dashboard, attached to a running run/server",
        description=(
            "Show the live state of every point: districts as rows of commune cells, the points "
            "that need attention, and the latest events. Reads the monitor's API and event "
            "stream; shows a banner and reconnects by itself when the monitor is unreachable "
            "(and receives the events it missed meanwhile). q or Ctrl-C exits."
        ),
    )
    p.add_argument(
        "--url",
        type=http_base_url,
        default="http://127.0.0.1:9108",
        metavar="URL",
        help="the monitor's API, http(s)://HOST:PORT (default: %(default)s)",
    )
    p.add_argument("--token", help="bearer token, if the API needs one (or set CONFMON_API_TOKEN)")
    p.add_argument(
        "--refresh",
        type=number_in(0.1, 20, unit=" frames per second"),
        default=2.0,
        metavar="HZ",
        help="frames per second, 0.1 to 20 (default: 2)",
    )
    p.add_argument(
        "--tz",
        type=time_zone,
        default="Asia/Ho_Chi_Minh",
        help="time zone of the clock (default: %(default)s)",
    )
    add_bell_options(p)
    p.add_argument(
        "--snapshot",
        metavar="FILE",
        help="write one frame to FILE (.svg, .html or .txt) and exit, for reports and bug reports",
    )
    p.add_argument(
        "--width",
        type=whole_number(*WIDTHS),
        default=120,
        help=f"snapshot width in columns, {WIDTHS[0]} to {WIDTHS[1]} (default: 120)",
    )
    p.add_argument(
        "--height",
        type=whole_number(*HEIGHTS),
        default=40,
        help=f"snapshot height in rows, {HEIGHTS[0]} to {HEIGHTS[1]} (default: 40)",
    )
    p.set_defaults(handler=_handle)
