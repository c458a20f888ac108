"""The event loop the probing thread runs on: uvloop where it is installed, else asyncio's.

Why: the probing thread is a loop of timers, socket readiness callbacks and short
tasks, the work an event loop's own overhead dominates; uvloop (libuv under a
Cython loop, well kept and made for this) does that part in C. docs/benchmarks.md
has the figures that decided it. Everything confmon does on the loop goes through
the public asyncio API (``add_reader``, ``call_at``, futures, tasks), which uvloop
implements, so the standard loop stays a complete fallback: where uvloop is not
installed (it is a dependency on Linux and macOS, not on Windows), or when
``CONFMON_LOOP=asyncio`` asks for it, the probing thread runs the standard loop.
"""

from __future__ import annotations

import asyncio
import os

from monitor.errors import ConfmonError

__all__ = ["LOOP_ENV", "loop_name", "new_event_loop"]

#: ``asyncio`` forces the standard loop, ``uvloop`` requires uvloop
LOOP_ENV = "CONFMON_LOOP"


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when available (see the module's docstring)."""
    wanted = os.environ.get(LOOP_ENV, "").strip().lower()
    if wanted != "asyncio":
        try:
            import uvloop
        except ImportError:
            if wanted == "uvloop":
                raise ConfmonError(f"{LOOP_ENV}=uvloop, but uvloop is not installed") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """``uvloop`` or ``asyncio``: what a status line says the probes run on."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
