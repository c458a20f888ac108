"""Sending one rendered notification over HTTP, and what its answer means.

:func:`post` makes one attempt and returns an :class:`Outcome`: ``delivered``, a
``retry`` after a delay, or ``failed`` for good. The rules, for every format:

* 2xx is delivered. Telegram and Zalo answer 200 with ``{"ok": false, ...}`` for some
  refusals: that is failed (bad chat id, bot blocked), with their ``description``.
* 429 and 503 are retried after their ``Retry-After`` (seconds or an HTTP date;
  Telegram's ``parameters.retry_after`` too), at least 1 s and at most
  :data:`LONGEST_WAIT`; without one, like any other temporary failure.
* 408, 425, 5xx, a refused or reset connection, a timeout, a TLS failure and a DNS
  failure are temporary: retried with exponential backoff and jitter
  (:class:`~monitor.backoff.Backoff` from :data:`FIRST_WAIT` to :data:`MAX_WAIT`, never
  less than half the current wait: :func:`retry_backoff`), for ever but never faster than that, until the notification is
  older than :data:`MAX_AGE` (then ``expired``: a message about a morning's outage is
  no use the next day).
* Any other 4xx, and a redirect (the URL is wrong: a POST is not followed), is
  permanent: recorded with the answer's first line and counted, not retried.

Headers: ``Content-Type``, ``User-Agent: confmon/VERSION``, for the native format
``X-Confmon-Signature: sha256=<hex HMAC-SHA256 of the body with the secret>`` and
``X-Confmon-Delivery: <uuid>`` (the same on every attempt: a receiver that has seen it
can drop a repeat), and the receiver's own ``headers``.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import aiohttp

from monitor.alerts.config import Receiver
from monitor.backoff import Backoff
from monitor.text import printable

__all__ = [
    "LONGEST_WAIT",
    "MAX_AGE",
    "Outcome",
    "post",
    "retry_backoff",
    "sign",
    "target_url",
]

#: the longest wait a Retry-After may ask for before the next try
LONGEST_WAIT = 3600.0
#: the first and the longest wait between two tries of a temporary failure
FIRST_WAIT = 1.0
MAX_WAIT = 300.0
#: a notification not delivered within this is given up (``expired``)
MAX_AGE = 24 * 3600.0

_TEMPORARY = {408, 425, 429, 500, 502, 503, 504}

try:
    from importlib.metadata import version as _version

    _AGENT = f"confmon/{_version('confmon')}"
except Exception:  # not installed (a checkout on sys.path)
    _AGENT = "confmon"


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Literal["delivered", "retry", "failed"]
    #: what happened, one line (``HTTP 200``, ``HTTP 429, retry after 7s``, ``timeout``)
    detail: str
    #: for a retry: the server's wait, if it said one (else the backoff decides)
    wait: float | None = None
    status: int | None = None


def sign(secret: str, body: bytes) -> str:
    """The ``X-Confmon-Signature`` header's value for ``body``."""
    mac = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def retry_backoff(rng: Callable[[float, float], float] = random.uniform) -> Backoff:
    """The waits between a receiver's tries of one notification."""
    return Backoff(FIRST_WAIT, MAX_WAIT, rng, least=0.5)


def target_url(receiver: Receiver, secret: str | None) -> str:
    """The receiver's URL with ``{secret}`` filled in."""
    return receiver.url.replace("{secret}", secret or "")


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return min(LONGEST_WAIT, max(1.0, seconds))


def _said(text: str) -> tuple[bool | None, str, float | None]:
    """(ok, description, retry_after) of a Telegram/Zalo-style JSON answer."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None, "", None
    if not isinstance(doc, dict):
        return None, "", None
    ok = doc.get("ok")
    desc = doc.get("description") or doc.get("message") or ""
    params = doc.get("parameters")
    wait = params.get("retry_after") if isinstance(params, dict) else None
    return (
        ok if isinstance(ok, bool) else None,
        printable(str(desc), 200),
        float(wait) if isinstance(wait, int | float) and not isinstance(wait, bool) else None,
    )


async def post(
    session: aiohttp.ClientSession,
    receiver: Receiver,
    secret: str | None,
    body: bytes,
    content_type: str,
    delivery: str,
) -> Outcome:
    """One attempt to deliver ``body`` (see the module docstring)."""
    headers = {
        **receiver.headers,
        "Content-Type": content_type,
        "User-Agent": _AGENT,
        "X-Confmon-Delivery": delivery,
    }
    if receiver.format == "confmon" and secret is not None:
        headers["X-Confmon-Signature"] = sign(secret, body)
    url = target_url(receiver, secret)
    try:
        async with session.post(
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=receiver.timeout),
        ) as resp:
            text = (await resp.content.read(65_536)).decode("utf-8", "replace")
            status = resp.status
            retry_after = _retry_after(resp.headers.get("Retry-After"), time.time())
            location = resp.headers.get("Location", "")
    except TimeoutError:
        return Outcome("retry", f"no answer within {receiver.timeout:g}s")
    except aiohttp.ClientSSLError as exc:
        return Outcome("retry", f"TLS: {printable(str(exc), 200)}")
    except aiohttp.ClientConnectorError as exc:
        why = exc.os_error.strerror if exc.os_error and exc.os_error.strerror else str(exc)
        return Outcome("retry", f"cannot connect: {printable(why, 200)}")
    except (aiohttp.ClientError, OSError) as exc:
        return Outcome("retry", printable(f"{type(exc).__name__}: {exc}", 200))
    ok, desc, said_wait = (
        _said(text) if receiver.format in ("telegram", "zalo") else (None, "", None)
    )
    first = printable(desc or text.strip().splitlines()[0] if text.strip() else "", 200)
    detail = f"HTTP {status}" + (f": {first}" if first else "")
    if 200 <= status < 300:
        if ok is False:
            return Outcome("failed", detail, status=status)
        if ok is None and receiver.format in ("telegram", "zalo"):
            # the Bot APIs always answer JSON with "ok": a page of HTML is something else
            # on the way (a proxy's login page, a wrong host)
            return Outcome(
                "failed",
                f"HTTP {status} without the Bot API's JSON answer ({first[:80] or 'empty'}): "
                "check the url",
                status=status,
            )
        return Outcome("delivered", f"HTTP {status}", status=status)
    if status in (429, 503) and (retry_after is not None or said_wait is not None):
        wait = retry_after if retry_after is not None else _retry_after(str(said_wait), 0.0)
        return Outcome("retry", f"HTTP {status}, retry after {wait:g}s", wait=wait, status=status)
    if status in _TEMPORARY or status >= 500:
        return Outcome("retry", detail, status=status)
    if 300 <= status < 400:
        where = f" to {printable(location, 200)}" if location else ""
        return Outcome(
            "failed", f"HTTP {status}: redirected{where}; fix the receiver's url", status=status
        )
    return Outcome("failed", detail, status=status)


async def sleep_until(deadline: float, stop: asyncio.Event) -> bool:
    """Wait until ``deadline`` (time.time()) or ``stop``; True if stopped."""
    delay = deadline - time.time()
    if delay <= 0:
        return stop.is_set()
    try:
        await asyncio.wait_for(stop.wait(), delay)
    except TimeoutError:
        return False
    return True
