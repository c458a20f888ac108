"""A service that has stopped ends its process within a grace period, and says what held it.

Why: when a service's main coroutine returns, ``asyncio.run`` still cancels the
tasks left over and joins the loop's default executor, and the interpreter then
joins every thread that is not a daemon; none of these waits has a limit. One
executor call that never returns (a library's blocking connect, a resolver that
hangs) or a task that swallows its cancellation keeps a service that has logged
"stopped" alive until systemd, or a test, kills it after its own stop timeout.

:func:`run_service` arms a watchdog thread the moment the coroutine is done. If
the process is still there ``grace`` seconds later, the watchdog logs one line
naming what is still running (each thread and where it waits) and, when confmon
owns the whole process (:func:`own_process`, set by the command line), ends it
with the exit code the service chose. Inside another program (the tests call
commands in-process) it only logs: ending someone else's process is not ours to do.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import traceback
from collections.abc import Coroutine
from typing import Any

__all__ = ["EXIT_GRACE", "own_process", "run_service"]

log = logging.getLogger("confmon")

#: how long a stopped service's process may take to end
EXIT_GRACE = 10.0

_owned = False


def own_process() -> None:
    """confmon is the program (not a library inside one): a stuck exit may be forced."""
    global _owned
    _owned = True


def run_service(main: Coroutine[Any, Any, int], grace: float = EXIT_GRACE) -> int:
    """``asyncio.run(main)``; the process ends at most ``grace`` seconds after ``main`` is done."""
    code = [1]  # an error or an interrupt unless main returns its own
    done = threading.Event()

    async def watched() -> int:
        try:
            code[0] = await main
            return code[0]
        finally:
            threading.Thread(
                target=_watch, args=(grace, code, done), name="confmon-exit", daemon=True
            ).start()

    try:
        return asyncio.run(watched())
    finally:
        if not _owned:
            done.set()  # in-process: the caller's program goes on; nothing left to watch


def _watch(grace: float, code: list[int], done: threading.Event) -> None:
    if done.wait(grace):
        return
    log.error(
        "stopped, but the process did not end within %gs; still running: %s",
        grace,
        "; ".join(_waiting()) or "nothing that Python can see",
    )
    if _owned:
        from monitor.logs import flush_logs

        flush_logs()
        os._exit(code[0])


def _waiting() -> list[str]:
    """Each thread still alive but this one: its name and the innermost frames it waits in."""
    frames = sys._current_frames()
    me = threading.get_ident()
    out = []
    for thread in threading.enumerate():
        if thread.ident == me or thread.ident not in frames:
            continue
        stack = traceback.extract_stack(frames[thread.ident])[-3:]
        where = " < ".join(
            f"{os.path.basename(f.filename)}:{f.lineno} {f.name}" for f in reversed(stack)
        )
        out.append(f"{thread.name}{'' if thread.daemon else ' (not daemon)'} in {where}")
    return out
