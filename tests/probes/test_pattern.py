"""body_regex patterns: RE2 gives Python's answers in linear time, and refuses what it cannot run."""

from __future__ import annotations

import asyncio
import re
import time

import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from monitor.probes.pattern import (
    MAX_PATTERN,
    PatternError,
    compile_pattern,
    search_off_loop,
    translate,
)

# --- a small grammar of Python patterns, to compare RE2's answers with re's -----------

_LITERALS = ["a", "b", "A", "ệ", "Đ", "Ạ", "1", "٣", " ", "_", "-", ".", "\n", "\t", "\xa0"]
_CLASSES = [
    r"\w", r"\W", r"\d", r"\D", r"\s", r"\S", ".", "[ab]", "[^a]", r"[\w-]", r"[\d\s]",
    "[]a]", "[^]b]", r"[\D]", "[a-c]", "[ệĐ]", r"[^\d]",
]  # fmt: skip
_ANCHORS = ["^", "$", r"\A", r"\Z"]


def _literal(ch: str) -> str:
    return {"\n": r"\n", "\t": r"\t"}.get(ch, re.escape(ch))


atoms = st.one_of(st.sampled_from(_LITERALS).map(_literal), st.sampled_from(_CLASSES))
quantifiers = st.sampled_from(["", "", "*", "+", "?", "{1,2}", "*?", "+?", "{2}"])


def _patterns() -> st.SearchStrategy[str]:
    quantified = st.builds(lambda a, q: a + q, atoms, quantifiers)
    leaf = st.one_of(quantified, quantified, st.sampled_from(_ANCHORS))
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=4).map("".join),
            st.builds(lambda a, b: f"{a}|{b}", inner, inner),
            st.builds(lambda a, q: f"(?:{a}){q}", inner, quantifiers),
            st.builds(lambda a: f"({a})", inner),
        ),
        max_leaves=8,
    )


texts = st.text(alphabet="abAệĐẠẹ1٣ _-.\n\t\xa0\u2003é", max_size=16)
flags = st.sampled_from(["", "", "(?i)", "(?s)", "(?m)", "(?ms)"])


@settings(max_examples=300, deadline=None)
@given(flag=flags, pattern=_patterns(), text=texts)
def test_re2_answers_as_python_re_does(flag: str, pattern: str, text: str) -> None:
    """For Python-style patterns (\\w, \\d, \\s, $, \\Z, classes), RE2 finds what re finds."""
    source = flag + pattern
    try:
        compiled = compile_pattern(source)
    except PatternError as exc:
        # refused where RE2 cannot keep the meaning ($ before more pattern): said, not wrong
        assert str(exc).startswith("'$' must end the pattern"), (source, exc)
        reject()
    assert compiled.search(text) == (re.search(source, text) is not None), (
        source,
        text,
        translate(source),
    )


@pytest.mark.parametrize("pattern", ["a|$^", r"a$\n", "(a$|b)c", "(?:a$)*"])
def test_a_dollar_that_more_pattern_follows_is_refused_not_misread(pattern: str) -> None:
    """RE2 keeps Python's $ (the end, or before a final newline) only where the match ends:
    elsewhere ("a|$^" matches "\n" in Python) the pattern is refused with one line."""
    with pytest.raises(PatternError, match=r"^'\$' must end the pattern"):
        compile_pattern(pattern)
    for fine in ("a$", "a$|b", "(?:x|a$)", "[$]b", r"a\$b", "(?m)a$^b"):
        compile_pattern(fine)


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        (r"Huyện Ba Vì: \w+ sàng$", "Huyện Ba Vì: sẵn sàng\n"),
        (r"^\d+$", "٣٤"),
        (r"a\sb", "a\u3000b"),
        (r"\u00e9", "café"),
        (r'"status": "ok"}$', '{"status": "ok"}\n'),
    ],
)
def test_python_meanings_are_kept(pattern: str, text: str) -> None:
    """Vietnamese letters are \\w, other digits are \\d, $ takes a final newline, as in re."""
    assert re.search(pattern, text)
    assert compile_pattern(pattern).search(text)


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"(a)\1", "backreferences are not supported"),
        (r"a(?=b)", "look-ahead and look-behind are not supported"),
        (r"(?<!a)b", "look-ahead and look-behind are not supported"),
        (r"(?>a+)b", "atomic groups are not supported"),
        (r"a++", "possessive quantifiers are not supported"),
        (r"(?x) a b", "verbose mode (?x) is not supported"),
        (r"[^\W]", r"\W inside [...] is not supported"),
        (r"\u12", r"incomplete escape \u"),
        ("(", "missing )"),
        ("a" * (MAX_PATTERN + 1), "characters long; at most"),
    ],
)
def test_what_re2_cannot_run_is_one_line_saying_why(pattern: str, why: str) -> None:
    """Each unsupported construct is a PatternError naming it, on one line."""
    with pytest.raises(PatternError) as caught:
        compile_pattern(pattern)
    message = str(caught.value)
    assert why in message
    assert "\n" not in message


def test_no_log_line_on_stderr_for_a_bad_pattern(capfd: pytest.CaptureFixture[str]) -> None:
    """RE2 prints its own error line unless told not to; confmon's one line is the only one."""
    with pytest.raises(PatternError):
        compile_pattern(r"(b)\1")
    assert capfd.readouterr().err == ""


def test_catastrophic_pattern_is_linear() -> None:
    """(a+)+$ on 100,000 a's and a b: re would take longer than the universe; RE2 answers."""
    pattern = compile_pattern("(a+)+$")
    started = time.monotonic()
    assert pattern.search("a" * 100_000 + "b") is False
    assert pattern.search("a" * 100_000) is True
    assert time.monotonic() - started < 20


async def test_the_loop_keeps_running_during_a_long_match() -> None:
    """A slow (linear but heavy) match runs off the loop: a ticker keeps ticking meanwhile."""
    pattern = compile_pattern("(.*a){60}")
    text = "a" * (1 << 18)
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = time.monotonic()
    found = await search_off_loop(pattern, text)
    took = time.monotonic() - started
    stop.set()
    await task
    assert found is True
    # on the loop the ticker would have ticked once; off it, about every 5 ms of the match
    assert ticks >= 5, (ticks, took)
