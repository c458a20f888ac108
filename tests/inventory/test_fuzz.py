"""Fuzzing the config loader: random YAML trees, mutated real configs, random bytes and sheets.

Whatever goes in, the only outcomes are a loaded :class:`~monitor.inventory.Inventory`
or a :class:`~monitor.errors.ConfmonError` whose every line is one line without a control
character: never another exception, never a hang (each example runs under an alarm).
The entry points are the ones the command line uses: :func:`parse_inventory` (what
``load_inventory`` calls after reading), :func:`read_csv`, and ``confmon check-config``
itself through :func:`monitor.cli.main` for some examples.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.cli import main
from monitor.errors import ConfigError, ConfmonError
from monitor.inventory import Inventory, parse_inventory
from monitor.inventory.csvimport import read_csv
from monitor.text import has_control
from tests.helpers import CONFIGS

EXAMPLES = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

#: no single example may take longer than this (a hang fails the test instead of the run)
HANG = 20


@contextlib.contextmanager
def no_hang(seconds: int = HANG) -> Iterator[None]:
    def stop(signum: int, frame: Any) -> None:
        raise AssertionError(f"the loader took over {seconds}s: a hang")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def assert_clean_lines(lines: list[str]) -> None:
    assert lines, "an error with no message"
    for line in lines:
        assert line and "\n" not in line and not has_control(line), repr(line)


def outcome(load: Any) -> Inventory | None:
    """Run ``load``; a ConfmonError must be clean lines, anything else fails the test."""
    with no_hang():
        try:
            return load()  # type: ignore[no-any-return]
        except ConfigError as exc:
            assert_clean_lines(exc.lines())
        except ConfmonError as exc:
            assert_clean_lines([str(exc)])
    return None


# --- strategies ------------------------------------------------------------------------------

#: text a config might hold, weighted toward what breaks parsers and terminals
WORDS = st.sampled_from(
    [
        "points", "profiles", "monitor", "maintenance", "thresholds", "id", "name", "host",
        "profile", "parent", "level", "icmp", "tcp", "http", "sip", "media", "port", "timeout",
        "interval", "stale_after", "from", "to", "start", "end", "days", "reachable_by",
        "required", "<<", "22:00", "2026-01-01", "1:30", "yes", "0x7f000001", "5s", "1ms",
        "10.0.0.1", "::", "fe80::1", "\x1b[2J", "a\rb", "\u202e", "", " ", "~", "null", "true",
    ]
)  # fmt: skip
TEXT = st.one_of(WORDS, st.text(max_size=12))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
TREES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(TEXT, inner, max_size=5)),
    max_leaves=40,
)

VALID: dict[str, Any] = {
    "monitor": {"interval": "5s", "stale_after": "20s"},
    "profiles": {"room": {"icmp": {"count": 5}, "sip": {"port": 5060}}},
    "maintenance": [{"points": ["a"], "from": "22:00", "to": "02:00", "days": ["sat"]}],
    "points": [
        {
            "id": "a",
            "name": "Huyện A",
            "host": "10.0.0.1",
            "profile": "room",
            "points": [{"id": "a.b", "name": "Xã B", "host": "10.0.0.2"}],
        },
        {"id": "c", "name": "C", "host": "10.0.0.3", "parent": "a"},
    ],
}


def _hanoi_sample() -> dict[str, Any]:
    """configs/hanoi.yaml's structure with its first three districts (read as plain YAML)."""
    data = yaml.safe_load((CONFIGS / "hanoi.yaml").read_text(encoding="utf-8"))
    data["points"] = data["points"][:3]
    return dict(data)


HANOI = _hanoi_sample()


def _paths(tree: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _paths(v, (*here, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _paths(v, (*here, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """``base`` with a few random edits: a value replaced, a key dropped or added, a list
    item duplicated, a subtree moved somewhere else."""
    tree: Any = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(tree)
        path = draw(st.sampled_from(paths))
        if not path:
            tree = draw(TREES) if draw(st.integers(0, 9)) == 0 else tree
            continue
        parent = tree
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1]
        action = draw(st.sampled_from(["replace", "drop", "add", "copy"]))
        if action == "replace":
            parent[key] = draw(TREES)
        elif action == "drop":
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(TEXT)] = draw(TREES)
        elif action == "add" and isinstance(parent, list):
            parent.insert(key, draw(TREES))
        else:
            other = draw(st.sampled_from(paths))
            value: Any = tree
            for part in other:
                value = value[part]
            parent[key] = copy.deepcopy(value)
    return tree


def dump(tree: Any) -> str:
    """Any tree as YAML text (flow or block, sorted or not, as PyYAML writes it)."""
    return yaml.safe_dump(tree, allow_unicode=True, sort_keys=False)


# --- the properties --------------------------------------------------------------------------


@EXAMPLES
@given(TREES)
def test_random_yaml_trees(tree: Any) -> None:
    """Random nested mappings, lists and scalars: an inventory or clean one-line errors."""
    outcome(lambda: parse_inventory(dump(tree), "fuzz.yaml"))


@EXAMPLES
@given(mutated(VALID))
def test_mutations_of_a_small_valid_config(tree: Any) -> None:
    outcome(lambda: parse_inventory(dump(tree), "fuzz.yaml"))


@EXAMPLES
@given(mutated(HANOI))
def test_mutations_of_the_hanoi_structure(tree: Any) -> None:
    outcome(lambda: parse_inventory(dump(tree), "fuzz.yaml"))


@EXAMPLES
@given(st.binary(max_size=400))
def test_random_bytes(raw: bytes) -> None:
    outcome(lambda: parse_inventory(raw, "fuzz.yaml"))


@EXAMPLES
@given(st.lists(st.sampled_from(list("{}[]:,-&*!<>|'\"#?%@`\n\t ab1")), max_size=80))
def test_random_yaml_punctuation(chars: list[str]) -> None:
    """Anchors, aliases, tags, flow and block syntax in random order: the parser's corners."""
    outcome(lambda: parse_inventory("".join(chars), "fuzz.yaml"))


@EXAMPLES
@given(mutated(VALID))
def test_the_same_trees_as_json(tree: Any) -> None:
    """JSON is YAML: an agent's assignment arrives as JSON text through parse_inventory."""
    outcome(lambda: parse_inventory(json.dumps(tree, ensure_ascii=False), "fuzz.json"))


CSV_CELLS = st.one_of(TEXT, st.sampled_from(['"', '"a', 'a"b', "=1+1", "", "10.0.0.1", "a,b"]))


@EXAMPLES
@given(
    st.lists(st.lists(CSV_CELLS, min_size=0, max_size=7), min_size=0, max_size=6),
    st.sampled_from(["id,name,parent,host,profile", "id,name,parent,host,profile,level", "id"]),
)
def test_random_sheets(rows: list[list[str]], header: str) -> None:
    """Random rows (quotes, formulas, commas) under a real or broken header."""
    text = header + "\n" + "\n".join(",".join(r) for r in rows) + "\n"
    outcome(lambda: read_csv(text.encode("utf-8"), "fuzz.csv"))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(tree=st.one_of(mutated(VALID), TREES))
def test_check_config_itself(tree: Any, tmp_path: Path) -> None:
    """`confmon check-config` (its main()): exit 0 or 2, nothing raised, every line printable."""
    path = tmp_path / "fuzz.yaml"
    path.write_text(dump(tree), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with no_hang(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check-config", str(path)])
    assert code in (0, 2)
    if code == 2:
        assert out.getvalue() == ""
        assert_clean_lines(err.getvalue().splitlines())
    else:
        assert err.getvalue() == ""
        assert not has_control(out.getvalue().replace("\n", ""))


def test_the_fuzzer_reaches_both_outcomes() -> None:
    """The strategies are not all refused: the valid base loads, and a mutation can fail."""
    assert parse_inventory(dump(VALID)).points["a.b"].parent == "a"
    assert len(parse_inventory(dump(HANOI)).points) > 30
    with pytest.raises(ConfigError):
        parse_inventory(dump({**VALID, "points": [{"id": "\x1b"}]}))
