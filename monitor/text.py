"""Text that came from outside (configs, payloads, requests) made safe to show.

A name or key from a config reaches the operator's terminal (check-config, the
dashboard, snapshots, one-line errors) and the ``/metrics`` exposition. A
control character in it (ESC starts a terminal sequence that can clear the
screen or retitle the window; CR and NL break line-based formats) must never be
passed through raw. The config refuses control characters in names and ids;
everything that prints text from elsewhere goes through :func:`printable` as
well, so a value that slipped past (an error quoting the bad key itself) is
shown escaped, Python-style, and Vietnamese letters stay as they are.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["CONTROL", "has_control", "printable", "quoted"]

#: C0 controls, DEL, C1 controls, the Unicode line/paragraph separators and
#: bidirectional overrides (which reorder what a terminal or a browser shows), and lone
#: surrogates (undecodable bytes kept by ``surrogateescape``: no encoder can write them)
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def has_control(text: str) -> bool:
    """True if ``text`` holds a character that :func:`printable` would escape."""
    return CONTROL.search(text) is not None


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    code = ord(ch)
    if ch == "\n":
        return "\\n"
    if ch == "\r":
        return "\\r"
    if ch == "\t":
        return "\\t"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, limit: int | None = None) -> str:
    """``text`` with control characters escaped (``\\x1b``, ``\\r``), NFC-normalised.

    ``limit`` cuts a long value to that many characters and says how much was left
    out, so an error quoting a 10 MB value stays one readable line.
    """
    text = unicodedata.normalize("NFC", text)
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}… ({len(text) - limit} more characters)"
    return CONTROL.sub(_escape, text)


def quoted(value: object, limit: int = 80) -> str:
    """A value for an error message: a string in single quotes, escaped and cut to ``limit``."""
    if isinstance(value, str):
        return "'" + printable(value, limit).replace("'", "\\'") + "'"
    return printable(repr(value), limit)
