"""Text from outside is shown escaped: a name cannot drive the operator's terminal."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from monitor.text import has_control, printable, quoted


def test_escape_sequences_and_line_breaks_are_shown_not_sent() -> None:
    assert printable("Xã\x1b[2JPhú\r\n") == "Xã\\x1b[2JPhú\\r\\n"
    assert printable("\u202eabc") == "\\u202eabc"
    assert has_control("a\x07") and not has_control("Huyện Ba Vì")


def test_vietnamese_letters_stay_and_are_normalised() -> None:
    decomposed = "Ba Vi\u0300"  # "Vì" written as i + combining grave
    assert printable(decomposed) == "Ba Vì"


def test_long_values_are_cut_with_a_count() -> None:
    assert printable("x" * 100, limit=10) == "x" * 10 + "… (90 more characters)"
    assert quoted("a'b") == "'a\\'b'"
    assert quoted(3) == "3"


@given(st.text())
def test_no_control_character_survives(text: str) -> None:
    assert not has_control(printable(text))


def test_undecodable_bytes_kept_as_surrogates_are_escaped_so_they_can_be_written() -> None:
    shown = printable(b"id-\xff".decode("utf-8", "surrogateescape"))
    assert shown == "id-\\udcff"
    shown.encode("utf-8")  # a lone surrogate would raise here
