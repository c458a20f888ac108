"""The Impairment value: validation, the command-line and JSON spellings, composition."""

from __future__ import annotations

import pytest

from monitor.lab import Impairment
from monitor.lab.shaping import Path


def test_parse_command_line_spelling() -> None:
    """delay/jitter/loss/down/dist/sip/http parse into seconds, ratios and codes."""
    imp = Impairment.parse("delay:40ms,jitter:10ms,loss:5%,dist:normal,sip:503,http:500,down")
    assert imp == Impairment(
        delay=0.04,
        jitter=0.01,
        distribution="normal",
        loss=0.05,
        down=True,
        sip_status=503,
        http_status=500,
    )
    assert Impairment.parse("delay:0ms") == Impairment()
    assert imp.describe() == "down, delay 40ms ±10ms (normal), loss 5%, sip 503, http 500"
    assert Impairment().describe() == "healthy"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lag:40ms", "unknown impairment 'lag'; use delay:40ms"),
        ("delay", "'delay' needs a value, e.g. delay:40ms"),
        ("delay:soon", "delay: 'soon' is not a duration"),
        ("delay:2m", "delay: '2m' is longer than 60s"),
        ("loss:150%", "loss: '150%' is out of range"),
        ("sip:199", "sip: 199 is not a SIP final status code"),
        ("http:abc", "http: 'abc' is not an HTTP status code"),
        ("dist:pareto", "dist: 'pareto' is not one of: uniform, normal"),
        ("", "no impairment given"),
    ],
)
def test_parse_errors_say_what_is_accepted(text: str, message: str) -> None:
    """Every bad spelling is a ValueError naming the key and what would do."""
    with pytest.raises(ValueError) as exc:
        Impairment.parse(text)
    assert message in str(exc.value)


def test_json_spelling_merges_into_a_base() -> None:
    """from_json takes numbers or unit strings and keeps the base's other fields."""
    base = Impairment(delay=0.04)
    assert Impairment.from_json({"loss": "5%"}, base) == Impairment(delay=0.04, loss=0.05)
    assert Impairment.from_json({"delay": 0.01, "down": True}) == Impairment(delay=0.01, down=True)
    assert Impairment.from_json(Impairment(jitter=0.002).to_json()) == Impairment(jitter=0.002)
    with pytest.raises(ValueError, match="down: 'maybe' is not true or false"):
        Impairment.from_json({"down": "maybe"})


def test_values_validate_themselves() -> None:
    """Negative delays, NaN and ratios above one cannot be built."""
    for bad in ({"delay": -0.1}, {"jitter": float("nan")}, {"loss": 1.5}, {"http_status": 99}):
        with pytest.raises(ValueError):
            Impairment(**bad)


def test_path_composes_hops() -> None:
    """Delays add, losses compound, down anywhere is down, each jittering hop keeps its own draw."""
    path = Path.through(
        [Impairment(delay=0.01, loss=0.1, jitter=0.002), Impairment(delay=0.02, loss=0.5)]
    )
    assert path is not None
    assert path.delay == pytest.approx(0.03)
    assert path.loss == pytest.approx(1 - 0.9 * 0.5)
    assert path.jitter == ((0.002, False),)
    assert not path.down
    assert Path.through([Impairment(sip_status=503), Impairment()]) is None
    down = Path.through([Impairment(), Impairment(down=True)])
    assert down is not None and down.down
