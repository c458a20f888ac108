"""The HTTP probe's settings and spec, importable without aiohttp.

The probe itself is :mod:`monitor.probes.http`, which imports aiohttp (a third
of a second on a small VM): tools that only read configs (``confmon
check-config``, the inventory model) need the settings model and the spec, not
the client. :data:`SPEC`'s probe function imports :mod:`monitor.probes.http` on
its first call; :mod:`monitor.probes.http` re-exports both names.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from monitor.core.results import ProbeResult
from monitor.inventory.types import Duration, Port, Strict
from monitor.probes.base import ProbeContext
from monitor.probes.spec import ProbeSpec, timeout_deadline

__all__ = ["SPEC", "HttpSettings", "probe", "settings_from_url"]


class HttpSettings(Strict):
    """An HTTP(S) GET of the point's status page."""

    scheme: Literal["http", "https"] = "http"
    port: Port | None = None
    path: str = "/"
    status: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=list)
    body_regex: str | None = None
    timeout: Duration = 2.0
    tls_verify: bool = True
    cert_min_days: Annotated[int, Field(ge=0)] = 14

    @field_validator("path")
    @classmethod
    def _path_starts_with_slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must start with '/'")
        return value

    @field_validator("body_regex")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"{value!r} is not a valid regular expression: {exc}") from None
        return value


async def probe(target: str, settings: HttpSettings, ctx: ProbeContext) -> ProbeResult:
    """:func:`monitor.probes.http.probe`, imported (with aiohttp) on the first call."""
    from monitor.probes import http

    return await http.probe(target, settings, ctx)


def settings_from_url(target: str) -> tuple[str, dict[str, Any]]:
    """The host of an ``http://`` or ``https://`` URL and the settings it implies.

    ``scheme``, ``path`` (with the query) and ``port`` when the URL names one;
    :class:`ValueError` for any other URL.
    """
    url = urllib.parse.urlsplit(target)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise ValueError(f"{target!r} is not an http:// or https:// URL")
    implied: dict[str, Any] = {"scheme": url.scheme}
    if url.port:
        implied["port"] = url.port
    implied["path"] = (url.path or "/") + (f"?{url.query}" if url.query else "")
    return url.hostname, implied


SPEC = ProbeSpec(
    name="http",
    settings=HttpSettings,
    probe=probe,
    deadline=timeout_deadline,
    measures=("rtt",),
    # time to first byte: connect, TLS and the request, several round trips
    rtt_is_round_trip=False,
    settings_from_url=settings_from_url,
)
