"""``body_regex`` patterns, matched in linear time by RE2 and never on the event loop.

Python's :mod:`re` backtracks: ``(a+)+$`` on a 31-byte body took 97.8 s, and
inside ``confmon run`` that froze every probe and the API. RE2 (the
``google-re2`` package) runs in time linear in the text, and releases the GIL
while it matches, so :func:`search_off_loop` runs the match on a small pool of
its own and the loop only waits for the answer (with the probe's deadline
around the wait).

The package has no type stubs; this module is the only place that touches it
and gives the rest of confmon a typed :class:`Pattern`.

Patterns are written as for Python's :mod:`re`, and :func:`compile_pattern`
keeps the meaning where RE2's differs: ``\\w``, ``\\d`` and ``\\s`` are Unicode
classes (Vietnamese letters are word characters), ``$`` also matches before a
final newline, ``\\Z`` is the end of the text, ``\\uXXXX`` is a character. What RE2
cannot do (backreferences, look-around, atomic groups, ``(?x)``) is refused with
one line saying which, so a config is checked when it is loaded, not when the
probe first runs. ``\\b`` stays RE2's, an ASCII word boundary.
"""

from __future__ import annotations

import asyncio
import functools
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

__all__ = ["MAX_PATTERN", "Pattern", "PatternError", "compile_pattern", "search_off_loop"]

MAX_PATTERN = 1000
"""Longest pattern accepted, in characters: a status-page check needs a fraction of it."""

#: Python's Unicode classes spelled for RE2 (str.isalnum() is letters and numbers;
#: str.isspace() is \t-\r, \x1c-\x1f, space, \x85 and the Z categories)
_WORD = r"\p{L}\p{N}_"
_SPACE = r"\t-\r\x{1c}-\x{20}\x{85}\p{Z}"
_OUTSIDE = {
    "w": f"[{_WORD}]",
    "W": f"[^{_WORD}]",
    "d": r"\p{Nd}",
    "D": r"\P{Nd}",
    "s": f"[{_SPACE}]",
    "S": f"[^{_SPACE}]",
    "Z": r"\z",
}
_INSIDE = {"w": _WORD, "d": r"\p{Nd}", "D": r"\P{Nd}", "s": _SPACE}
_NEGATED_IN_CLASS = frozenset("WS")
#: a multi-line flag anywhere, global ``(?m)`` or scoped ``(?im:...)``: ``$`` is then RE2's
_MULTILINE = re.compile(r"\(\?[a-zA-Z]*m[a-zA-Z]*[:)]")
_HEX = re.compile(r"[0-9a-fA-F]+")

#: what an RE2 compile error means in the words of someone who wrote a Python regex
_HINTS = (
    (re.compile(r"invalid escape sequence: \\[1-9]"), "backreferences are not supported"),
    (re.compile(r"\(\?<?[=!]"), "look-ahead and look-behind are not supported"),
    (re.compile(r"\(\?>"), "atomic groups are not supported"),
    (re.compile(r"bad repetition operator: .[+]"), "possessive quantifiers are not supported"),
    (re.compile(r"\(\?x"), "verbose mode (?x) is not supported"),
    (re.compile(r"\(\?\("), "conditionals are not supported"),
    (re.compile(r"\(\?#"), "comments (?#...) are not supported"),
    (re.compile(r"\(\?[aLu]"), "flags other than i, m and s are not supported"),
    (re.compile(r"pattern too large"), "it compiles to more than RE2's memory budget"),
)


class PatternError(ValueError):
    """A pattern RE2 cannot run; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled ``body_regex``: :meth:`search` takes linear time in the text."""

    source: str
    _regex: Any = field(repr=False, compare=False)

    def search(self, text: str) -> bool:
        """Whether the pattern matches anywhere in ``text`` (like ``re.search``)."""
        return self._regex.search(text) is not None


def _unicode_escape(source: str, i: int, width: int) -> tuple[str, int]:
    digits = source[i + 2 : i + 2 + width]
    if len(digits) != width or not _HEX.fullmatch(digits):
        raise PatternError(f"incomplete escape \\{source[i + 1]} at position {i}")
    return f"\\x{{{digits}}}", i + 2 + width


def _class_end(source: str, j: int) -> int:
    """The index after the character class that opens at ``source[j]`` ("[")."""
    k, n = j + 1, len(source)
    if source.startswith("^", k):
        k += 1
    if source.startswith("]", k):
        k += 1  # a "]" first is a member
    while k < n and source[k] != "]":
        k += 2 if source[k] == "\\" else 1
    return k + 1


def _ends_here(source: str, i: int) -> bool:
    """Whether a match must end right after the ``$`` at ``source[i]``: only closing groups
    (without a quantifier) and other alternatives follow it.

    Only there can RE2 say what Python's ``$`` means (the end, or just before a final
    newline) by consuming that newline: followed by anything else (``$^``, ``$\\n``), the
    consumed newline would change what the rest matches.
    """
    j, n = i + 1, len(source)
    skipping = False  # inside another alternative of a group that encloses the $
    depth = 0  # groups opened inside the skipped alternative
    while j < n:
        c = source[j]
        if c == "\\":
            if not skipping:
                return False
            j += 2
            continue
        if c == "[":
            if not skipping:
                return False
            j = _class_end(source, j)
            continue
        if c == "(":
            if not skipping:
                return False
            depth += 1
        elif c == ")":
            if skipping and depth:
                depth -= 1
            else:
                skipping = False  # a group around the $ closes
                if source[j + 1 : j + 2] in ("*", "+", "?", "{"):
                    return False
        elif c == "|":
            skipping = True
        elif not skipping:
            return False
        j += 1
    return True


def translate(source: str) -> str:
    """``source`` (Python :mod:`re` syntax) rewritten so that RE2 gives the same answers."""
    multiline = _MULTILINE.search(source) is not None
    out: list[str] = []
    i, n = 0, len(source)
    in_class = False
    class_body = 0  # index where the current class's members start ("]" there is literal)
    while i < n:
        c = source[i]
        if c == "\\" and i + 1 < n:
            e = source[i + 1]
            if e in "uU":
                text, i = _unicode_escape(source, i, 4 if e == "u" else 8)
                out.append(text)
                continue
            if in_class and e in _NEGATED_IN_CLASS:
                raise PatternError(
                    f"\\{e} inside [...] is not supported; write the class the other way round, "
                    f"e.g. [^\\{e.lower()}...]"
                )
            out.append((_INSIDE if in_class else _OUTSIDE).get(e, c + e))
            i += 2
            continue
        if in_class:
            if c == "]" and i > class_body:
                in_class = False
            elif source.startswith("[:", i) and (end := source.find(":]", i + 2)) >= 0:
                out.append(source[i : end + 2])  # a POSIX class such as [:alpha:]
                i = end + 2
                continue
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            if source.startswith("^", i):
                out.append("^")
                i += 1
            class_body = i
            continue
        if c == "$" and not multiline:
            if not _ends_here(source, i):
                raise PatternError(
                    "'$' must end the pattern or one of its alternatives (Python's $ also "
                    "matches before a final newline, which RE2 can only say there); use \\Z "
                    "for the very end, or (?m) for the end of each line"
                )
            out.append(r"(?:\n?\z)")  # Python's $: the end, or just before a final newline
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _explain(message: str) -> str:
    for pattern, hint in _HINTS:
        if pattern.search(message):
            return f"{message} ({hint})"
    return message


@functools.lru_cache(maxsize=256)
def compile_pattern(source: str) -> Pattern:
    """``source`` compiled for RE2, or :class:`PatternError` saying why it cannot be."""
    if len(source) > MAX_PATTERN:
        raise PatternError(f"the pattern is {len(source)} characters long; at most {MAX_PATTERN}")
    options = re2.Options()
    options.log_errors = False  # RE2 would print its own line on stderr for each error
    try:
        regex = re2.compile(translate(source), options)
    except re2.error as exc:
        raw = exc.args[0] if exc.args else ""
        message = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        raise PatternError(_explain(message or "RE2 cannot compile it")) from None
    return Pattern(source, regex)


_pool: ThreadPoolExecutor | None = None


async def search_off_loop(pattern: Pattern, text: str) -> bool:
    """:meth:`Pattern.search` on a thread of a small pool of its own, awaited on the loop.

    The pool is not the loop's default executor, which resolves host names: a long
    match must not make lookups wait. A caller that stops waiting (a timeout)
    leaves the match to finish on its thread, in time linear in ``text``.
    """
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="confmon-regex")
    return await asyncio.get_running_loop().run_in_executor(_pool, pattern.search, text)
