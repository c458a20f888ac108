"""Blocking calls that may never return (a FIFO without a writer, a hung mount, a dead resolver), bounded.

Why: ``asyncio.to_thread`` runs on the loop's default executor, which
``asyncio.run`` joins at exit: one read that hangs there hangs the shutdown too.
:func:`bounded` runs the call on a daemon thread of its own and stops waiting
after ``limit`` seconds; the thread is abandoned (it ends with the process).
A result that arrives after the wait was given up, or after the loop closed, is
dropped without a word.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["bounded"]

T = TypeVar("T")


async def bounded(fn: Callable[[], T], limit: float, name: str) -> T:
    """``fn()`` on a daemon thread; raises :class:`TimeoutError` after ``limit`` seconds."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def deliver(value: T | None, error: BaseException | None) -> None:
        if future.done():
            return  # given up on already
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)  # type: ignore[arg-type]

    def work() -> None:
        try:
            value, error = fn(), None
        except BaseException as exc:
            value, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(deliver, value, error)

    threading.Thread(target=work, name=name, daemon=True).start()
    return await asyncio.wait_for(future, limit)
