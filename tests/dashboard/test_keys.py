"""Keys at the live dashboard, on a real pseudo-terminal: `q` quits, nothing typed is echoed,
the terminal's settings come back."""

from __future__ import annotations

import asyncio
import os
import pty
import termios

from rich.console import Console

from monitor.dashboard.app import run_dashboard
from monitor.dashboard.keys import Keys
from tests.helpers import free_port


async def test_q_quits_and_typed_keys_are_not_echoed() -> None:
    master, slave = pty.openpty()
    stdin = os.fdopen(slave, "r", closefd=False)
    out = os.fdopen(os.dup(slave), "w", encoding="utf-8")
    seen = bytearray()
    loop = asyncio.get_running_loop()

    def drain() -> None:  # what the terminal would show: frames, and any echo
        try:
            seen.extend(os.read(master, 65536))
        except OSError:
            loop.remove_reader(master)

    loop.add_reader(master, drain)
    before = termios.tcgetattr(slave)
    assert before[3] & termios.ECHO
    console = Console(file=out, force_terminal=True, width=100, height=30, color_system=None)
    # nothing listens on the port: the dashboard shows its no-data banner and keeps trying
    url = f"http://127.0.0.1:{free_port()}"
    task = loop.create_task(run_dashboard(url, console=console, stdin=stdin))
    try:
        async with asyncio.timeout(20):
            while termios.tcgetattr(slave)[3] & termios.ECHO:  # noqa: ASYNC110 - a tty's mode
                await asyncio.sleep(0.05)
            while b"NO DATA FROM THE SERVER" not in seen:  # noqa: ASYNC110 - filled by drain()
                await asyncio.sleep(0.05)
        os.write(master, b"hello")
        await asyncio.sleep(1.0)  # two frames
        assert not task.done()
        assert b"hello" not in seen, "typed keys were echoed over the frame"
        os.write(master, b"q")
        async with asyncio.timeout(10):
            await task
        assert termios.tcgetattr(slave) == before  # echo and line mode are back
    finally:
        task.cancel()
        loop.remove_reader(master)
        out.close()
        stdin.close()
        os.close(master)
        os.close(slave)


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
