"""The live dashboard on a real pseudo-terminal: `q` quits, nothing typed is echoed, the
terminal's settings come back, and the bell rings once for a cut district."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import termios
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from monitor.dashboard.app import run_dashboard
from monitor.dashboard.bell import Bell
from monitor.dashboard.keys import Keys
from tests.helpers import free_port
from tests.outputs.fixtures import serving
from tests.outputs.test_api import feed_district_down


@dataclass
class Terminal:
    """A pseudo-terminal: the dashboard's side (``slave``) and what it shows (``seen``)."""

    master: int
    slave: int
    seen: bytearray = field(default_factory=bytearray)
    #: the terminal's settings before the dashboard started and after it ended
    before: list[object] = field(default_factory=list)
    after: list[object] = field(default_factory=list)

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def echo_on(self) -> bool:
        return bool(termios.tcgetattr(self.slave)[3] & termios.ECHO)

    async def until(self, text: bytes, within: float = 20) -> None:
        async with asyncio.timeout(within):
            while text not in self.seen:  # noqa: ASYNC110 - filled by the pty's reader
                await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def dashboard_on_a_pty(url: str, bell: Bell | None = None) -> AsyncIterator[Terminal]:
    """``run_dashboard`` attached to ``url``, on a pty, until the block ends (then it must
    have ended by itself, by a key)."""
    master, slave = pty.openpty()
    term = Terminal(master, slave)
    stdin = os.fdopen(slave, "r", closefd=False)
    out = os.fdopen(os.dup(slave), "w", encoding="utf-8")
    loop = asyncio.get_running_loop()

    def drain() -> None:  # what the terminal shows: frames, bells, and any echo
        # on a thread of its own: the dashboard writes its frames to the terminal from the
        # event loop, and a frame larger than what the pty holds blocks that write until
        # someone reads; a reader on the same loop never would (a deadlock, seen in CI)
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # every side of the slave closed: EIO
                return
            if not chunk:
                return
            term.seen.extend(chunk)

    reader = threading.Thread(target=drain, name="pty-reader", daemon=True)
    reader.start()
    term.before = termios.tcgetattr(slave)
    console = Console(file=out, force_terminal=True, width=100, height=30, color_system=None)
    task = loop.create_task(run_dashboard(url, console=console, stdin=stdin, bell=bell))
    try:
        yield term
        async with asyncio.timeout(10):
            await task
        term.after = termios.tcgetattr(slave)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        out.close()
        stdin.close()
        os.close(slave)
        await asyncio.to_thread(reader.join, 10)
        os.close(master)


async def test_q_quits_and_typed_keys_are_not_echoed() -> None:
    # nothing listens on the port: the dashboard shows its no-data banner and keeps trying
    async with dashboard_on_a_pty(f"http://127.0.0.1:{free_port()}") as term:
        assert int(term.before[3]) & termios.ECHO  # type: ignore[call-overload]
        await term.until(b"NO DATA FROM THE SERVER")
        assert not term.echo_on()
        term.type(b"hello")
        await asyncio.sleep(1.0)  # two frames
        assert b"hello" not in term.seen, "typed keys were echoed over the frame"
        term.type(b"q")
    assert term.after == term.before  # echo and line mode are back


async def test_the_bell_rings_once_for_a_cut_district(tmp_path: Path) -> None:
    """A district headquarters down: one BEL, not one per frame; none with the bell off."""
    async with serving(tmp_path) as (monitor, base):
        feed_district_down(monitor)
        async with dashboard_on_a_pty(base, Bell()) as term:
            await term.until(b"Needs attention")
            await asyncio.sleep(1.5)  # three more frames
            term.type(b"q")
        assert term.seen.count(b"\x07") == 1
        async with dashboard_on_a_pty(base, None) as quiet:
            await quiet.until(b"Needs attention")
            await asyncio.sleep(1.0)
            quiet.type(b"q")
        assert b"\x07" not in quiet.seen


async def test_no_terminal_no_keys_and_nothing_changed() -> None:
    """Standard input that is not a terminal (a pipe, a service) gives no keys."""
    read, write = os.pipe()
    with os.fdopen(read, "r") as stdin, Keys(stdin) as keys:
        assert not keys.active
        os.write(write, b"q")
        try:
            async with asyncio.timeout(0.3):
                await keys.next()
            raise AssertionError("a key from a pipe")
        except TimeoutError:
            pass
    os.close(write)


async def test_search_and_detail_from_the_keyboard(tmp_path: Path) -> None:
    """On a live monitor: `/` and a name without diacritics, Enter opens its detail with
    each probe's latest result; Esc twice is back on the city; q quits."""
    async with serving(tmp_path) as (monitor, base):
        feed_district_down(monitor)
        async with dashboard_on_a_pty(base) as term:
            await term.until(b"Needs attention")
            term.type(b"/ba vi")
            await term.until(b"Search: ba vi")
            term.seen.clear()
            term.type(b"\r")
            await term.until(b"reason")
            await term.until(b"2 rooms unreachable behind it")
            # each probe's latest result, read from the monitor when the detail opened
            await term.until(b"Probes (latest result)")
            await term.until("✖ sip".encode())
            term.type(b"\x1b")
            await asyncio.sleep(0.3)
            term.type(b"\x1b")
            term.seen.clear()
            await term.until(b"Needs attention")
            term.type(b"q")


async def test_a_acknowledges_the_worst_incident_on_the_monitor(tmp_path: Path) -> None:
    """`a` sends the acknowledgement of the worst incident (Ba Vì's cut uplink) to the
    monitor, which then stops its reminders; the screen says who acknowledged it."""
    async with serving(tmp_path) as (monitor, base):
        feed_district_down(monitor)
        async with dashboard_on_a_pty(base) as term:
            await term.until(b"Needs attention")
            term.type(b"a")
            await term.until(b"acknowledged ba-vi: alert reminders stop")
            assert monitor.acks.acked("ba-vi")
            await term.until("✔ acked by".encode())  # from the next summary
            term.type(b"q")
        (ack,) = monitor.acks.active()
        assert ack.cause == "ba-vi" and "@" in ack.by  # user@host of the operator
