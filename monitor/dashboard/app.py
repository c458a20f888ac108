"""``confmon dashboard``: the live screen, or one frame to a file (``--snapshot``)."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import io
import re
import socket
import time
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.live import Live

from monitor.dashboard.bell import Bell
from monitor.dashboard.client import acknowledge, follow, watch_detail
from monitor.dashboard.keys import Keys
from monitor.dashboard.model import Snapshot
from monitor.dashboard.ui import Ui
from monitor.dashboard.view import render
from monitor.errors import ConfmonError, UsageError
from monitor.text import printable

__all__ = ["run_dashboard", "write_snapshot"]


async def run_dashboard(
    url: str,
    *,
    token: str | None = None,
    refresh_hz: float = 2.0,
    tz: str = "Asia/Ho_Chi_Minh",
    console: Console | None = None,
    notes: list[str] | None = None,
    stdin: IO[str] | None = None,
    bell: Bell | None = None,
) -> None:
    """Show the live dashboard until ``q`` is typed or it is cancelled (Ctrl-C). ``notes``
    are shown under the header; keys are read from ``stdin`` (default: the process's) when
    it is a terminal; ``bell`` (None: silent) rings the terminal bell once when a big
    incident begins."""
    console = console or Console()
    snap = Snapshot(url=url, notes=list(notes or []))
    follower = asyncio.get_running_loop().create_task(follow(url, snap, token))
    period = 1.0 / refresh_hz
    ui = Ui()
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task[None]] = set()
    wake = asyncio.Event()
    watcher = asyncio.get_running_loop().create_task(
        watch_detail(url, snap, token, lambda: ui.point if ui.mode == "detail" else None, wake)
    )
    try:
        with (
            Keys(stdin) as keys,
            Live(console=console, screen=True, auto_refresh=False, transient=True) as live,
        ):
            next_frame = time.monotonic()
            while True:
                size = console.size
                live.update(render(snap, size.width, size.height, tz=tz, ui=ui), refresh=True)
                if bell is not None and snap.points and bell.update(snap.incidents()):
                    console.bell()
                next_frame += period
                while (left := next_frame - time.monotonic()) > 0:
                    try:
                        async with asyncio.timeout(left):
                            key = await keys.next()
                    except TimeoutError:
                        break
                    if ui.key(key, snap):
                        return
                    if ui.mode == "detail":
                        wake.set()  # its probes, now
                    if ui.ack is not None:
                        cause, ui.ack = ui.ack, None
                        task = loop.create_task(_acknowledge(url, token, cause, ui))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                    next_frame = time.monotonic()  # show what the key did at once
                    break
                next_frame = max(next_frame, time.monotonic() - period)  # no burst after a stall
                if follower.done():
                    follower.result()
    finally:
        for task in (*pending, watcher, follower):  # the follower last: its failure counts
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


#: rich's SVG loads its font from a public CDN: a file meant for a report must not
_REMOTE_FONT = re.compile(r',\s*url\("https?://[^"]*"\)\s*format\("[^"]*"\)')


def _offline_svg(svg: str) -> str:
    """rich's SVG export, made to stand alone: the font only from the machine showing it
    (else its monospace fallback), and spaces kept as they are by every renderer
    (``xml:space="preserve"``; librsvg collapses runs of spaces without it)."""
    svg = _REMOTE_FONT.sub("", svg)
    return svg.replace("<svg ", '<svg xml:space="preserve" ', 1)


async def _acknowledge(url: str, token: str | None, cause: str, ui: Ui) -> None:
    """Send an acknowledgement and put what came of it on screen for a few seconds."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no user name in this environment
        user = "operator"
    by = f"{user}@{socket.gethostname()}"
    ui.message = await acknowledge(url, token, cause, by)
    ui.message_until = time.monotonic() + 8


async def write_snapshot(
    url: str,
    path: Path,
    *,
    token: str | None = None,
    width: int = 120,
    height: int = 40,
    tz: str = "Asia/Ho_Chi_Minh",
    wait: float = 10.0,
) -> None:
    """Connect, wait for data, and write one frame as .svg, .html or .txt."""
    kind = path.suffix.lower()
    if kind not in (".svg", ".html", ".txt"):
        raise UsageError(
            f"--snapshot {printable(str(path))}: the file must end in .svg, .html or .txt"
        )
    snap = Snapshot(url=url)
    connected = asyncio.Event()
    loop = asyncio.get_running_loop()
    follower = loop.create_task(follow(url, snap, token, connected=connected, retry=False))
    waiter = loop.create_task(connected.wait())
    try:
        # a refused connection or token ends the follower at once; only silence waits
        done, _ = await asyncio.wait(
            {follower, waiter}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
        )
        if follower in done:
            follower.result()  # TokenRefused / Unreachable: one line, exit 2 / 1
        if waiter not in done:
            raise ConfmonError(
                f"no answer from {printable(url, 200)} within {wait:g}s ({snap.error or 'no data'})"
            )
    finally:
        for task in (follower, waiter):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConfmonError):
                await task
    console = Console(
        record=True,
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
    )
    console.print(render(snap, width, height, tz=tz))
    if kind == ".svg":
        text = _offline_svg(console.export_svg(title=snap.name))
    elif kind == ".html":
        text = console.export_html()
    else:
        text = console.export_text()
    try:
        await asyncio.to_thread(path.write_text, text, encoding="utf-8")
    except OSError as exc:
        raise ConfmonError(f"cannot write {printable(str(path))}: {exc.strerror or exc}") from None
