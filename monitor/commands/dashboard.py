"""``confmon dashboard``: the live terminal dashboard attached to a running monitor."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from monitor.commands.common import Subparsers
from monitor.errors import UsageError

__all__ = ["add_parser"]


def _handle(args: argparse.Namespace) -> int:
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


def add_parser(sub: Subparsers) -> None:
    """Register ``confmon dashboard``."""
    p = sub.add_parser(
        "dashboard",
        help="the live terminal dashboard, attached to a running run/server",
        description=(
            "Show the live state of every point: districts as rows of commune cells, the points "
            "that need attention, and the latest events. Reads the monitor's API and event "
            "stream; shows a banner and reconnects by itself when the monitor is unreachable "
            "(and receives the events it missed meanwhile). Ctrl-C exits."
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
    p.set_defaults(handler=_handle)
