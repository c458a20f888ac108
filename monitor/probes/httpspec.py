"""The HTTP probe's settings and spec, importable without aiohttp.

The probe itself is :mod:`monitor.probes.http`, which imports aiohttp (a third
of a second on a small VM): tools that only read configs (``confmon
check-config``, the inventory model) need the settings model and the spec, not
the client. :data:`SPEC`'s probe function imports :mod:`monitor.probes.http` on
its first call; :mod:`monitor.probes.http` re-exports both names.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from monitor.core.results import ProbeResult
from monitor.inventory.types import Duration, Port, Strict
from monitor.probes.base import ProbeContext
from monitor.probes.spec import ProbeSpec, timeout_deadline
from monitor.text import has_control, quoted

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
    def _path_is_a_request_target(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{quoted(value)} must start with '/'")
        if has_control(value) or any(c.isspace() for c in value):
            # the client would strip or escape them silently, and request another page
            raise ValueError(
                f"{quoted(value)} holds a space or a control character: percent-encode it (%20)"
            )
        if len(value) > 2048:
            raise ValueError(f"the path is {len(value)} characters long; at most 2048")
        return value

    @field_validator("body_regex")
    @classmethod
    def _regex_runs_in_re2(cls, value: str | None) -> str | None:
        if value is not None:
            from monitor.probes.pattern import PatternError, compile_pattern

            try:
                compile_pattern(value)
            except PatternError as exc:
                raise ValueError(f"{quoted(value)} is not a pattern RE2 can run: {exc}") from None
        return value


async def probe(target: str, settings: HttpSettings, ctx: ProbeContext) -> ProbeResult:
    """:func:`monitor.probes.http.probe`, imported (with aiohttp) on the first call."""
    from monitor.probes import http

    return await http.probe(target, settings, ctx)


def settings_from_url(target: str) -> tuple[str, dict[str, Any]]:
    """The host of an ``http://`` or ``https://`` URL and the settings it implies.

    ``scheme``, ``path`` (with the query) and ``port`` when the URL names one;
    :class:`ValueError` (one line saying what is wrong) for any other URL. The
    authority is read as every probe target is (:func:`monitor.probes.target.parse_url`).
    """
    from monitor.probes.target import parse_url

    url = parse_url(target)
    implied: dict[str, Any] = {"scheme": url.scheme, "path": url.path}
    if url.target.port is not None:
        implied["port"] = url.target.port
    return url.target.host, implied


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
