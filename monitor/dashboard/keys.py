"""Keys typed at the live dashboard, read without blocking the event loop.

While the dashboard runs, its terminal is in cbreak mode with echo off: a key reaches the
dashboard as soon as it is typed (no Enter), and nothing typed is drawn over the frame.
Ctrl-C still interrupts (signals stay on). The terminal's settings are put back when the
dashboard stops, however it stops. When standard input is not a terminal (a pipe, a
service), there are no keys and nothing is changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import termios
import tty
from typing import IO, Any

__all__ = ["Keys", "parse"]

#: what one read takes from the terminal at most (a paste arrives as several reads)
_CHUNK = 256
#: escape sequences of the keys the dashboard knows (xterm and VT100 forms)
_SEQUENCES = {
    "\x1b[A": "up",
    "\x1b[B": "down",
    "\x1b[C": "right",
    "\x1b[D": "left",
    "\x1bOA": "up",
    "\x1bOB": "down",
    "\x1b[5~": "pageup",
    "\x1b[6~": "pagedown",
}
_NAMED = {"\r": "enter", "\n": "enter", "\x7f": "backspace", "\b": "backspace", "\t": "tab"}


def parse(text: str) -> list[str]:
    """What one read from the terminal holds, as keys: a character, or a name (``enter``,
    ``esc``, ``backspace``, ``up``, ``down``, ...). An escape sequence the dashboard does not
    know is dropped whole; ESC alone (nothing after it in the same read) is ``esc``."""
    keys: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\x1b":
            for seq, name in _SEQUENCES.items():
                if text.startswith(seq, i):
                    keys.append(name)
                    i += len(seq)
                    break
            else:
                if i + 1 < len(text) and text[i + 1] in "[O":  # unknown sequence: skip it
                    j = i + 2
                    while j < len(text) and not (text[j].isalpha() or text[j] == "~"):
                        j += 1
                    i = j + 1
                else:
                    keys.append("esc")
                    i += 1
            continue
        keys.append(_NAMED.get(ch, ch))
        i += 1
    return keys


class Keys:
    """``with Keys() as keys: key = await keys.next()``: the keys typed, one at a time."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self._stream = stream if stream is not None else sys.stdin
        self._fd: int | None = None
        self._saved: list[Any] | None = None
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> Keys:
        try:
            fd = self._stream.fileno()
        except (AttributeError, OSError, ValueError):
            return self
        if not os.isatty(fd):
            return self
        self._saved = termios.tcgetattr(fd)
        tty.setcbreak(fd, termios.TCSANOW)  # no line buffering, no echo; signals stay on
        self._fd = fd
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._read)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(self._fd)
        if self._saved is not None:
            with contextlib.suppress(termios.error, OSError):
                termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
        self._fd = None

    @property
    def active(self) -> bool:
        """True when keys are being read (standard input is a terminal)."""
        return self._fd is not None

    def _read(self) -> None:
        assert self._fd is not None
        try:
            data = os.read(self._fd, _CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # the terminal went away: no more keys
            assert self._loop is not None
            self._loop.remove_reader(self._fd)
            return
        for key in parse(data.decode("utf-8", errors="replace")):
            self._queue.put_nowait(key)

    async def next(self) -> str:
        """The next key typed (never comes when standard input is not a terminal: bound the
        wait with ``asyncio.timeout``)."""
        return await self._queue.get()
