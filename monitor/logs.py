"""Structured logging: text for people (default) or one JSON object per line for machines.

Records go through a queue to a writer thread (QueueHandler/QueueListener), so a
slow or stuck stderr (a full pipe, a paused terminal) never blocks the event loop.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import logging.handlers
import queue
import sys
import time
from typing import Any

__all__ = ["flush_logs", "setup_logging"]

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


_listener: logging.handlers.QueueListener | None = None


def setup_logging(fmt: str = "text", level: str = "info") -> None:
    """Log to stderr in ``text`` or ``json``; ``level`` is a logging level name."""
    global _listener
    stream = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        stream.setFormatter(_JsonFormatter())
    else:
        stream.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", "%H:%M:%S")
        )
    if _listener is not None:
        _listener.stop()
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(records, stream)
    _listener.start()
    atexit.register(_listener.stop)  # flushes what is queued when the process exits
    root = logging.getLogger()
    root.handlers[:] = [logging.handlers.QueueHandler(records)]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def flush_logs() -> None:
    """Write out what is queued now (before an exit that skips the interpreter's own)."""
    if _listener is not None:
        with contextlib.suppress(AttributeError):  # stopped already
            _listener.stop()
