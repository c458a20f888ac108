"""One reading of a probe target: ``host``, ``host:port``, ``[IPv6]`` or ``[IPv6]:port``.

Every probe kind takes its target through :func:`parse_target` (``confmon probe``
directly, an ``http://`` URL's authority through :func:`parse_url`), so the same
mistake reads the same everywhere and says what is actually wrong: an unclosed
bracket, a port that is not a number, a port out of range.

The one trap is a bare IPv6 address: ``::1:5060`` is a valid address *and*
looks like ``::1`` with port 5060. For a probe that takes a port, guessing
either way probes the wrong thing without a word, so such a target is refused
with both spellings (``[::1]:5060`` for the port, ``[::1:5060]`` for the
address). A probe without a port (icmp) has no such doubt and takes it as the
address it is.

What a caller may rely on: the answer's ``host`` is normalised by
:func:`monitor.inventory.units.parse_host` and ``port`` is ``None`` or in
1..65535; anything else raises :class:`ValueError` with one line that quotes the
target through :func:`monitor.text.quoted`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from monitor.inventory.units import parse_host
from monitor.text import quoted

__all__ = ["ParsedUrl", "Target", "parse_target", "parse_url"]

_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also takes '²' and '٣'


@dataclass(frozen=True, slots=True)
class Target:
    """A probe's host (normalised) and the port the target named, if any."""

    host: str
    port: int | None = None


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    """An ``http(s)://`` URL as the HTTP probe takes it."""

    scheme: str
    target: Target
    path: str
    """The path with its query (``/status?x=1``), ``/`` when the URL had none."""


class _Bad(ValueError):
    """What is wrong with a target, without the target (the caller quotes it once)."""


def _port(port: str) -> int:
    if not port:
        raise _Bad("no port after ':'")
    if not _DIGITS.fullmatch(port):
        raise _Bad(f"the port {quoted(port, 20)} is not a number")
    value = int(port) if len(port) <= 6 else 1 << 20  # int() of 5,000 digits is refused anyway
    if not 1 <= value <= 65535:
        raise _Bad(f"port {port[:12]} is out of range (1-65535)")
    return value


def _host(host: str) -> str:
    try:
        return parse_host(host)
    except ValueError as exc:  # its message quotes the host and says what is wrong with it
        raise _Bad(str(exc)) from None


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


def _bracketed(text: str) -> Target:
    inside, closed, rest = text[1:].partition("]")
    if not closed:
        raise _Bad("unclosed '[': write [IPv6] or [IPv6]:port")
    if not _is_ipv6(inside):
        raise _Bad(f"brackets hold an IPv6 address, and {quoted(inside)} is not one")
    if not rest:
        return Target(_host(inside))
    if not rest.startswith(":"):
        raise _Bad(f"unexpected {quoted(rest, 20)} after ']': write [IPv6]:port")
    return Target(_host(inside), _port(rest[1:]))


def _bare_ipv6(text: str, takes_port: bool) -> Target:
    """A target with two or more colons and no brackets: an IPv6 address, or a mistake."""
    head, _, last = text.rpartition(":")
    port_like = _DIGITS.fullmatch(last) is not None and _is_ipv6(head)
    if _is_ipv6(text):
        if takes_port and port_like:
            raise _Bad(
                f"ambiguous: write [{head}]:{last} for port {last} of {head}, "
                f"or [{text}] for the address itself"
            )
        return Target(_host(text))
    if port_like:
        if not takes_port:
            raise _Bad("this probe takes no port; give just the host")
        raise _Bad(f"an IPv6 address with a port is written in brackets: [{head}]:{last}")
    raise _Bad("not an IP address or host name")


def _parse(text: str, takes_port: bool) -> Target:
    if text.startswith("["):
        target = _bracketed(text)
    elif "[" in text or "]" in text:
        raise _Bad("a bracket belongs around an IPv6 address at the start: [IPv6]:port")
    elif text.count(":") >= 2:
        target = _bare_ipv6(text, takes_port)
    elif ":" in text:
        host, _, port = text.partition(":")
        if not host.strip():
            raise _Bad("no host before ':'")
        if host != host.rstrip():
            raise _Bad("a space before ':': write host:port")
        target = Target(_host(host), _port(port))
    else:
        target = Target(_host(text))
    if target.port is not None and not takes_port:
        raise _Bad("this probe takes no port; give just the host")
    return target


def parse_target(text: str, *, takes_port: bool = True) -> Target:
    """``host``, ``host:port``, ``[IPv6]``, ``[IPv6]:port`` or a bare IPv6 address.

    ``takes_port`` is whether the probe has a port at all: without one, a bare
    IPv6 address is never ambiguous, and a port in the target is an error.
    """
    text = text.strip()
    if not text:
        raise ValueError("an empty target: give a host, host:port or [IPv6]:port")
    try:
        return _parse(text, takes_port)
    except _Bad as exc:
        raise ValueError(f"{quoted(text)}: {exc}") from None


def parse_url(text: str) -> ParsedUrl:
    """An ``http://`` or ``https://`` URL: scheme, host and port, path with query.

    The authority is read by :func:`parse_target` (an IPv6 address in brackets,
    as RFC 3986 wants; a zone written ``%25eth0`` as RFC 6874 does). A URL with
    credentials is refused (the probe would not send them) and a fragment is
    dropped, as a browser does.
    """
    scheme, sep, rest = text.strip().partition("://")
    if not sep or scheme.lower() not in ("http", "https"):
        raise ValueError(f"{quoted(text)} is not an http:// or https:// URL")
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:].partition("#")[0]
    if "@" in authority:
        raise ValueError(f"{quoted(text)}: credentials in the URL are not supported")
    if not authority:
        raise ValueError(f"{quoted(text)}: the URL has no host")
    if authority.count(":") >= 2 and not authority.startswith("["):
        raise ValueError(
            f"{quoted(text)}: an IPv6 address in a URL goes in brackets, e.g. http://[::1]:8080/"
        )
    try:
        target = _parse(authority.replace("%25", "%"), takes_port=True)
    except _Bad as exc:
        raise ValueError(f"{quoted(text)}: {exc}") from None
    path = tail if tail.startswith("/") else "/" + tail
    return ParsedUrl(scheme.lower(), target, path)
