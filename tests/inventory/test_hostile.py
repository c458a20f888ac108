"""The config under abuse: every class of hostile input is one clear line and exit 2.

Deep or long input never recurses, what is read is bounded in type and size, values
that would break a run are refused (and the timing rule is checked against the real
scheduler and health model), text never reaches a terminal raw, messages name what the
user wrote, and the spreadsheet import and export hold too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.cli import main
from monitor.core.events import State
from monitor.core.health import HealthModel
from monitor.core.results import ProbeResult
from monitor.core.scheduler import Scheduler
from monitor.errors import ConfigError, UsageError
from monitor.inventory import Inventory, load_inventory, parse_inventory
from monitor.inventory import source as source_module
from monitor.inventory.csvimport import read_csv
from monitor.inventory.load import MAX_LEVELS
from monitor.inventory.source import MAX_CONFIG_BYTES, make_loader, read_config_bytes
from monitor.inventory.units import parse_host
from monitor.inventory.writer import to_csv
from monitor.probes.base import ProbeContext
from monitor.probes.registry import PROBE_TYPES, deadline_of
from monitor.probes.sip import SipSettings
from monitor.text import has_control
from tests.inventory.test_fuzz import no_hang
from tests.virtual_clock import run_virtual

ROOM = "profiles:\n  room: {icmp: {}}\n"


def problems(text: str | bytes) -> list[str]:
    """The lines a broken inventory gives (fails the test if it loads)."""
    with pytest.raises(ConfigError) as exc:
        parse_inventory(text, "bad.yaml")
    lines = exc.value.lines()
    for line in lines:
        assert "\n" not in line and not has_control(line), line
    return lines


def one_problem(text: str | bytes) -> str:
    lines = problems(text)
    assert len(lines) == 1, lines
    return lines[0]


def check_config(path: str | Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["check-config", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


def point(pid: str, **extra: str) -> str:
    fields = {"id": pid, "name": pid.upper(), "host": "10.0.0.1", **extra}
    return "{" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"


def nested_tree(levels: int) -> str:
    out = [ROOM, "points:\n"]
    indent = "  "
    for i in range(levels - 1):
        out.append(f"{indent}- id: p{i}\n{indent}  name: P{i}\n{indent}  host: 10.0.0.1\n")
        if i == 0:
            out.append(f"{indent}  profile: room\n")
        out.append(f"{indent}  points:\n")
        indent += "    "
    out.append(f"{indent}- {{id: leaf, name: Leaf, host: 10.0.0.2}}\n")
    return "".join(out)


def parent_chain(length: int, cycle: bool = False) -> str:
    first = point("p0", profile="room", **({"parent": f"p{length - 1}"} if cycle else {}))
    rows = [f"  - {first}\n"]
    rows += [f"  - {point(f'p{i}', parent=f'p{i - 1}')}\n" for i in range(1, length)]
    return ROOM + "points:\n" + "".join(rows)


@pytest.fixture(params=["libyaml", "python"])
def yaml_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the C parser and again with PyYAML's pure-Python one (the fallback)."""
    if request.param == "python":
        monkeypatch.setattr(source_module, "_ConfigLoader", make_loader(yaml.SafeLoader))
    return str(request.param)


# --- 1. depth: nothing recurses --------------------------------------------------------------


def test_a_tree_of_32_levels_loads_and_33_is_refused_at_the_deepest_point() -> None:
    """32 levels (more than any council) load; one more is one line naming the point."""
    inv = parse_inventory(nested_tree(MAX_LEVELS))
    assert inv.points["leaf"].depth == MAX_LEVELS - 1
    assert inv.points["leaf"].district == "p0"
    line = one_problem(nested_tree(MAX_LEVELS + 1))
    assert "points nest more than 32 levels deep here (this point is 33 levels down)" in line


@pytest.mark.parametrize("levels", [50, 200, 2_000])
def test_a_deeply_nested_tree_is_one_line(levels: int, yaml_parser: str) -> None:
    """200 levels of `points:` gave a RecursionError; now any depth is one line."""
    line = one_problem(nested_tree(levels))
    assert "nested more than 100 levels deep" in line or "more than 32 levels" in line


@pytest.mark.parametrize("length", [1_000, 5_000])
def test_long_parent_chains_are_refused_quickly(length: int) -> None:
    """A flat chain of 1,000 gave a RecursionError and the cycle check was cubic (12 s at
    1,500, minutes at 5,000); now the first point too deep is named, in linear time."""
    started = time.monotonic()
    line = one_problem(parent_chain(length))
    assert time.monotonic() - started < 30  # generous: the cubic check took minutes
    assert line.startswith("bad.yaml:36: points[32].parent: points nest more than 32 levels")


def test_a_chain_of_32_loads_with_every_depth_right() -> None:
    """The depth is computed through parents written in any order, not only nested."""
    text = parent_chain(MAX_LEVELS)
    inv = parse_inventory(text)
    assert [inv.points[f"p{i}"].depth for i in range(MAX_LEVELS)] == list(range(MAX_LEVELS))
    # written backwards, the same tree
    head, rows = text.split("points:\n")
    again = parse_inventory(head + "points:\n" + "".join(reversed(rows.splitlines(True))))
    assert again.points["p31"].depth == 31 and again.points["p31"].district == "p0"


def test_cycles_are_reported_once_each_in_linear_time() -> None:
    """A ring of 5,000 is one line (its text cut), a self-contained pair another; the points
    hanging below a cycle add no line of their own."""
    started = time.monotonic()
    line = one_problem(parent_chain(5_000, cycle=True))
    assert time.monotonic() - started < 30
    assert line == (
        "bad.yaml:4: points[0].parent: parent chain forms a cycle: p0 -> p4999 -> p4998 -> p4997"
        " -> p4996 -> ... (4992 more) -> p3 -> p2 -> p1 -> p0"
    )
    text = ROOM + (
        "points:\n"
        f"  - {point('root', profile='room')}\n"
        f"  - {point('a', parent='b')}\n"
        f"  - {point('b', parent='a')}\n"
        f"  - {point('below', parent='a')}\n"
        f"  - {point('c', parent='d')}\n"
        f"  - {point('d', parent='c')}\n"
    )
    assert [line.split(": ", 2)[2] for line in problems(text)] == [
        "parent chain forms a cycle: a -> b -> a",
        "parent chain forms a cycle: c -> d -> c",
    ]


@pytest.mark.parametrize(
    "where",
    [
        "points:\n  - {id: a, name: NEST, host: 10.0.0.1, profile: room}\n",
        "monitor: {name: NEST}\npoints:\n  - {id: a, name: A, host: 10.0.0.1, profile: room}\n",
        "NEST\n",
    ],
    ids=["in a name", "in monitor", "the whole file"],
)
@pytest.mark.parametrize("brackets", ["[]", "{}"])
def test_yaml_nested_10000_deep_anywhere_is_one_line(
    where: str, brackets: str, yaml_parser: str
) -> None:
    """A document nested 10,000 deep (lists or mappings) inside any value: one line, from
    libyaml's own limit or ours, with either parser."""
    deep = (
        "[" * 10_000 + "x" + "]" * 10_000
        if brackets == "[]"
        else "{a: " * 10_000 + "1" + "}" * 10_000
    )
    text = ROOM + where.replace("NEST", deep) if where != "NEST\n" else deep + "\n"
    line = one_problem(text)
    assert "nesting depth" in line or "nested more than 100 levels deep" in line


def test_deep_input_through_the_real_command_has_no_traceback(tmp_path: Path) -> None:
    """`confmon check-config` as a process on a 5,000-point chain and a 10,000-deep value."""
    for name, text in (
        ("chain.yaml", parent_chain(5_000)),
        ("deep.yaml", ROOM + "points: " + "[" * 10_000 + "]" * 10_000 + "\n"),
    ):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        proc = subprocess.run(
            [sys.executable, "-m", "monitor", "check-config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1


# --- 2. what is read: type, size, bytes ------------------------------------------------------


def test_a_fifo_without_a_writer_is_refused_at_once(tmp_path: Path) -> None:
    """It hung for ever; now it is refused before it is opened (generous bound for a loaded box)."""
    fifo = tmp_path / "inventory.yaml"
    os.mkfifo(fifo)
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "check-config", str(fifo)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"{fifo}: cannot read file: is a FIFO (named pipe), not a regular file\n"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/dev/zero", "/dev/zero: cannot read file: is a device, not a regular file"),
        ("/tmp", "/tmp: cannot read file: is a directory, not a YAML file"),
    ],
)
def test_devices_and_directories_are_refused_unread(
    path: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check-config /dev/zero` grew to 9.4 GB; a directory said only 'Is a directory'."""
    assert check_config(path, capsys) == (2, "", message + "\n")


def test_an_empty_path_says_no_config_file_given(capsys: pytest.CaptureFixture[str]) -> None:
    """`check-config ""` (an unset variable) said 'Is a directory'."""
    assert check_config("", capsys) == (
        2,
        "",
        "confmon: no config file given: give the path of a YAML file\n",
    )
    assert main(["inventory", "import", ""]) == 2
    assert "no config file given: give the path of a CSV file" in capsys.readouterr().err


def test_a_file_over_the_size_limit_is_refused_unread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 17 MiB (sparse) file is refused by its size, without reading it."""
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(MAX_CONFIG_BYTES + (1 << 20))
    code, _, err = check_config(big, capsys)
    assert code == 2
    assert err == f"{big}: file is 17.0 MiB; a config file may be at most 16.0 MiB\n"


def test_at_most_the_limit_plus_one_byte_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file whose size says 0 but that goes on (/proc) is cut at the limit, not read whole."""
    monkeypatch.setattr(source_module, "MAX_CONFIG_BYTES", 64)
    with pytest.raises(ConfigError, match="file is over 64 bytes, the most a config file may be"):
        read_config_bytes("/proc/self/status")
    monkeypatch.setattr(source_module, "MAX_CONFIG_BYTES", 1 << 20)
    assert read_config_bytes("/proc/self/status").startswith(b"Name:")


def test_read_config_bytes_refuses_an_empty_path() -> None:
    """The empty path is a usage error, said as such (Path('') would be the directory '.')."""
    with pytest.raises(UsageError, match="no config file given"):
        read_config_bytes("")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"points: [\xff]\n", "bad.yaml:1: byte 0xff is not valid UTF-8; save the file as UTF-8"),
        ("x".encode("utf-16"), "bad.yaml:1: the file is UTF-16: save it as UTF-8"),
        (
            b"points:\n  - {id: a, name: A\x00B}\n",
            "bad.yaml:2: character '\\x00' (U+0000, column 20) is not allowed in a YAML file"
            " (is this a binary or UTF-16 file?): remove it",
        ),
        (
            "monitor: {name: a\x1b[2Jb}\n",
            "bad.yaml:1: character '\\x1b' (U+001B, column 18) is not allowed in a YAML file:"
            " remove it",
        ),
        ("- a\n- b\n", "bad.yaml:1: expected a mapping with 'points:' at the top, got a list"),
        ("hello\n", "bad.yaml:1: expected a mapping with 'points:' at the top, got 'hello'"),
        ("42\n", "bad.yaml:1: expected a mapping with 'points:' at the top, got 42"),
        ("", "bad.yaml:1: the file is empty; expected a YAML mapping"),
        (
            "points: []\n---\npoints: []\n",
            "bad.yaml:2: (top level): a second YAML document ('---'): an inventory is one document",
        ),
        (
            "points: !!python/object:os.system [ls]\n",
            "bad.yaml:1: points: tag 'tag:yaml.org,2002:python/object:os.system' is not used in"
            " an inventory: remove it",
        ),
        (
            "a: *nowhere\n",
            "bad.yaml:1: a: alias *nowhere is not defined above it",
        ),
        ("? [a, b]\n: 1\n", "bad.yaml:1: (top level): a key must be text, not a list"),
    ],
    ids=[
        "non-utf8",
        "utf16",
        "nul",
        "raw-esc",
        "list",
        "scalar",
        "number",
        "empty",
        "two-documents",
        "python-tag",
        "undefined-alias",
        "list-key",
    ],
)
def test_bytes_and_shapes_that_are_not_an_inventory(text: str | bytes, message: str) -> None:
    """Each is one line with its line number; a NUL gave a two-line PyYAML message."""
    assert one_problem(text) == message


@pytest.mark.parametrize("kind", ["aliases", "merge keys", "merged aliases"])
def test_alias_and_merge_key_bombs_are_refused_before_they_expand(kind: str) -> None:
    """'Billion laughs' by aliases, or by merge keys (which PyYAML expands by copying), stops
    at the alias limit in about a second, not after gigabytes. A value that arrives through
    a merge counts all it holds, so hiding the aliases behind `<<` does not get past."""
    if kind == "aliases":
        rows = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
        rows += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    elif kind == "merged aliases":
        rows = ["m0: &m0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
        for i in range(1, 10):
            rows.append(f"s{i}: &s{i} {{" + ", ".join(f"k{j}: *m{i - 1}" for j in range(9)) + "}")
            rows.append(f"m{i}: &m{i} {{<<: *s{i}}}")
    else:
        rows = ["m0: &m0 {" + ", ".join(f"k{j}: {j}" for j in range(9)) + "}"]
        rows += [
            f"m{i}: &m{i} {{"
            + ", ".join(f"k{j}: *m{i - 1}" for j in range(9))
            + f", <<: *m{i - 1}}}"
            for i in range(1, 10)
        ]
    with no_hang(30):  # an uncounted expansion would walk 9**9 values: stop, do not hang
        line = one_problem("\n".join(rows) + "\n")
    assert "aliases expand too far: more than 100,000 values come from aliases" in line


def test_a_million_values_is_the_limit_of_one_file() -> None:
    """A 2 MB list of numbers stops at 1,000,000 values (the node graph PyYAML would build
    for a 16 MiB one took 2.5 GB and 49 s)."""
    line = one_problem("points: [" + "0," * 1_000_001 + "0]\n")
    assert line.endswith("more than 1,000,000 values: this is not an inventory")


def test_merge_keys_and_anchors_still_work() -> None:
    """Sharing settings by anchors and merge keys is unchanged: own keys win, first source wins."""
    inv = parse_inventory(
        "profiles:\n"
        "  base: &base {icmp: {count: 3}, sip: {port: 5070}}\n"
        "  other: {<<: *base, sip: {port: 5080}}\n"
        "  both: {<<: [{icmp: {count: 7}}, *base]}\n"
        "points:\n  - {id: a, name: A, host: 10.0.0.1, profile: other}\n"
    )
    assert inv.profiles["other"].sip is not None and inv.profiles["other"].sip.port == 5080
    assert inv.profiles["other"].icmp is not None and inv.profiles["other"].icmp.count == 3
    assert inv.profiles["both"].icmp is not None and inv.profiles["both"].icmp.count == 7
    line = one_problem(ROOM + "x: &x {<<: *x}\npoints: []\n")
    assert line == "bad.yaml:3: x.<<: an alias refers to a value that contains it"


# --- 3. values that would break the run ------------------------------------------------------


def profile_problem(profile: str, monitor: str = "") -> str:
    return one_problem(
        (f"monitor: {{{monitor}}}\n" if monitor else "")
        + f"profiles:\n  room: {profile}\n"
        + "points:\n  - {id: a, name: A, host: 10.0.0.1, profile: room}\n"
    )


@pytest.mark.parametrize(
    ("profile", "field", "message"),
    [
        ("{tcp: {port: true}}", "room.tcp.port", "expected a whole number, got true"),
        ("{tcp: {port: 80.0}}", "room.tcp.port", "expected a whole number, got 80.0"),
        ("{sip: {port: '5060'}}", "room.sip.port", "expected a whole number, got '5060'"),
        ("{icmp: {count: false}}", "room.icmp.count", "expected a whole number, got false"),
        ("{media: {packets: true}}", "room.media.packets", "expected a whole number, got true"),
        ("{http: {tls_verify: 1}}", "room.http.tls_verify", "expected true or false, got 1"),
        ("{http: {tls_verify: yes}}", "room.http.tls_verify", "expected true or false, got 'yes'"),
        ("{sip: {alive_codes: [true]}}", "room.sip.alive_codes[0]", "expected a whole number"),
        ("{icmp: {}, reachable_by: []}", "room", "reachable_by is empty"),
        ("{icmp: {}, required: []}", "room", "required is empty"),
    ],
)
def test_booleans_are_not_numbers_and_lists_not_empty(
    profile: str, field: str, message: str
) -> None:
    """`port: true` was taken as port 1; strict types say what was written instead."""
    line = profile_problem(profile)
    assert f"profiles.{field}: {message}" in line


@pytest.mark.parametrize(
    ("monitor", "message"),
    [
        ("interval: 1ms", "monitor.interval: 1ms is shorter than the scheduler's 20ms grid"),
        ("interval: 19ms", "monitor.interval: 19ms is shorter than the scheduler's 20ms grid"),
        ("fail_after: true", "monitor.fail_after: expected a whole number, got true"),
        ("event_retention: 9999d", "'9999d' is longer than 3650d"),
    ],
)
def test_monitor_settings_that_the_scheduler_cannot_keep(monitor: str, message: str) -> None:
    """An interval below the 20 ms grid was accepted (and spun the scheduler)."""
    assert message in profile_problem("{icmp: {}}", monitor)


def test_an_interval_on_the_grid_is_accepted() -> None:
    inv = parse_inventory(
        "monitor: {interval: 20ms}\n" + ROOM + "points:\n  - " + point("a", profile="room")
    )
    assert inv.settings.interval == pytest.approx(0.02)


def test_sip_and_media_on_one_udp_port_are_refused() -> None:
    """A reflector on the SIP port would echo the OPTIONS back; over TCP the ports differ."""
    line = profile_problem("{sip: {port: 5060}, media: {port: 5060}}")
    assert "profiles.room.media.port: media and sip both use UDP port 5060" in line
    parse_inventory(
        "profiles:\n  room: {sip: {transport: tcp, port: 5060}, media: {port: 5060}}\n"
        "points:\n  - {id: a, name: A, host: 10.0.0.1, profile: room}\n"
    )


@pytest.mark.parametrize(
    ("monitor", "profile", "refused"),
    [
        ("interval: 5s, stale_after: 20s", "{sip: {timeout: 7s}}", None),  # 10 + 7 < 20
        ("interval: 5s, stale_after: 20s", "{sip: {timeout: 10s}}", "25s apart"),  # 15 + 10
        ("interval: 5s, stale_after: 6500ms", "{sip: {timeout: 1s}}", None),  # 5 + 1 < 6.5
        ("interval: 5s, stale_after: 6500ms", "{sip: {timeout: 2s}}", "7s apart"),  # 5 + 2
        ("interval: 5s, stale_after: 20s", "{icmp: {timeout: 30s}}", "65.08s apart"),
        ("interval: 5s, stale_after: 20s", "{icmp: {}, sip: {}}", None),  # the shipped profile
    ],
)
def test_timeouts_that_would_make_a_point_flap(
    monitor: str, profile: str, refused: str | None
) -> None:
    """A timeout too long for stale_after is refused, naming how far apart results come."""
    text = (
        f"monitor: {{{monitor}}}\nprofiles:\n  room: {profile}\n"
        "points:\n  - {id: a, name: A, host: 10.0.0.1, profile: room}\n"
    )
    if refused is None:
        parse_inventory(text)
        return
    line = one_problem(text)
    assert "timeout: a failing" in line and refused in line and "would flap to unknown" in line


def states_of_a_failing_point(inv: Inventory, seconds: float = 120.0) -> list[State]:
    """The real scheduler on the virtual clock, every probe failing at its full deadline, its
    cycles fed to the real health model (taken = when the probe started), ticked every 0.5 s:
    the point's visible state at each tick."""

    async def run() -> list[State]:
        loop = asyncio.get_running_loop()
        health = HealthModel(inv, now=loop.time())

        def probe(name: str) -> Any:
            async def fail(target: str, settings: Any, ctx: ProbeContext) -> ProbeResult:
                started = loop.time()
                # a probe gives up at its deadline and its result is ready a moment later (a
                # result at the very instant of the next slot or tick would be seen before
                # or after it by the order the loop runs them in: not what the rule is about)
                await asyncio.sleep(deadline_of(name, settings) + 0.001)
                return ProbeResult(
                    probe=name, target=target, ok=False, at=started, duration=0.0, error="timeout"
                )

            return fail

        def sink(p: Any, results: Any, elapsed: float) -> None:
            now = loop.time()
            health.ingest(p.id, results, now, min(max(r.at for r in results), now))

        states = []
        async with ProbeContext() as ctx:
            sched = Scheduler(inv, ctx, sink, registry={n: probe(n) for n in PROBE_TYPES})
            task = loop.create_task(sched.run())
            for _ in range(int(seconds * 2)):
                await asyncio.sleep(0.5)
                health.tick(loop.time())
                states.append(health.points["a"].state)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        return states

    return run_virtual(run())


@pytest.mark.parametrize(
    ("stale", "accepted", "refused"),
    [("20s", 7.0, 10.0), ("6500ms", 1.0, 2.0)],
)
def test_the_timing_rule_matches_what_scheduler_and_health_do(
    stale: str, accepted: float, refused: float
) -> None:
    """With the longest accepted timeout a dead point is `down` at every tick once two cycles
    have failed; with the shortest refused one (built in code, past the loader) it keeps
    falling back to `unknown` (its failures never add up to `down`): the rule is no stricter
    and no looser than the run."""
    inv = parse_inventory(
        f"monitor: {{interval: 5s, stale_after: {stale}}}\n"
        f"profiles:\n  room: {{sip: {{timeout: {accepted}}}}}\n"
        "points:\n  - {id: a, name: A, host: 10.0.0.1, profile: room}\n"
    )
    settled = 120  # ticks: after 60 s, well past two failed cycles of either
    kept = states_of_a_failing_point(inv)
    assert set(kept[settled:]) == {State.DOWN}
    slow = inv.profiles["room"].model_copy(update={"sip": SipSettings(timeout=refused)})
    flapping = states_of_a_failing_point(dataclasses.replace(inv, profiles={"room": slow}))
    assert State.UNKNOWN in flapping[settled:]
    with pytest.raises(ConfigError, match="would flap to unknown"):
        parse_inventory(
            f"monitor: {{interval: 5s, stale_after: {stale}}}\n"
            f"profiles:\n  room: {{sip: {{timeout: {refused}}}}}\n"
            "points:\n  - {id: a, name: A, host: 10.0.0.1, profile: room}\n"
        )


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("0x7f000001", "'0x7f000001' would be read as the IPv4 address 127.0.0.1: write 127.0.0.1"),
        ("127.1", "'127.1' would be read as the IPv4 address 127.0.0.1: write 127.0.0.1"),
        ("2130706433", "'2130706433' would be read as the IPv4 address 127.0.0.1"),
        ("010.0.0.1", "'010.0.0.1' would be read as the IPv4 address 8.0.0.1: write 8.0.0.1"),
        ("1.2.3", "'1.2.3' would be read as the IPv4 address 1.2.0.3"),
        ("0.0.0.0", "'0.0.0.0' is the unspecified address"),
        ("::", "'::' is the unspecified address"),
        ("224.0.0.1", "'224.0.0.1' is a multicast address"),
        ("ff02::1", "'ff02::1' is a multicast address"),
        ("255.255.255.255", "'255.255.255.255' is the broadcast address"),
        ("0.1.2.3", "'0.1.2.3' is in 0.0.0.0/8"),
        (
            "fe80::1",
            "'fe80::1' is link-local: add the interface it is reached on, e.g. fe80::1%eth0",
        ),
        ("", "the host is empty: write an IP address or a host name"),
        ("  ", "the host is empty"),
        ("[::1]", "'[::1]': write the IPv6 address without brackets"),
        ("10.0.0.1:5060", "'10.0.0.1:5060': write only the host ('10.0.0.1'); ports are set"),
        ("http://mcu.example.vn/", "is a URL: write only the host"),
        (7, "'7' is not an IP address or host name"),
        (True, "True is not an IP address or host name"),
    ],
)
def test_hosts_that_are_not_one_machine(host: object, message: str) -> None:
    """Multicast, broadcast, 'any', short and hex forms were accepted or misnamed."""
    with pytest.raises(ValueError) as exc:
        parse_host(host)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("host", "normal"),
    [
        ("fe80::1%eth0", "fe80::1%eth0"),
        ("127.20.0.1", "127.20.0.1"),
        ("169.254.1.1", "169.254.1.1"),
    ],
)
def test_hosts_that_are_fine(host: str, normal: str) -> None:
    assert parse_host(host) == normal


def test_a_host_written_as_a_number_is_judged_as_written() -> None:
    """`host: 127.1` is a YAML number; the message names the address it would be."""
    line = one_problem(ROOM + "points:\n  - {id: a, name: A, host: 127.1, profile: room}\n")
    assert line.endswith(
        "points[0].host: '127.1' would be read as the IPv4 address 127.0.0.1: write 127.0.0.1"
    )


def test_ids_with_a_trailing_newline_are_refused() -> None:
    """`_POINT_ID` used `$`, which matches before a final newline."""
    from monitor.inventory.units import parse_point_id

    with pytest.raises(ValueError, match="is not a valid id"):
        parse_point_id("ba-vi\n")
    line = one_problem(ROOM + 'points:\n  - {id: "ba-vi\\n", name: A, host: 10.0.0.1}\n')
    assert line == "bad.yaml:4: points[0].id: 'ba-vi\\n' holds a line break: write it on one line"


def test_an_empty_days_list_is_not_every_day() -> None:
    line = one_problem(
        ROOM + "maintenance:\n  - {points: [a], days: [], from: '22:00', to: '02:00'}\n"
        "points:\n  - {id: a, name: A, host: 10.0.0.1, profile: room}\n"
    )
    assert "days is empty" in line


# --- 4. control characters -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "field", "shown"),
    [
        ('monitor: {name: "\\e[2J\\e[H"}\n', "monitor.name", "'\\x1b[2J\\x1b[H'"),
        ('points:\n  - {id: a, name: "A\\rB", host: 10.0.0.1}\n', "points[0].name", "'A\\rB'"),
        (
            'points:\n  - {id: a, name: "A\\u202eB", host: 10.0.0.1}\n',
            "points[0].name",
            "'A\\u202eB'",
        ),
        ('points:\n  - {id: a, name: "A\\x9bB", host: 10.0.0.1}\n', "points[0].name", "'A\\x9bB'"),
        ('points:\n  - {id: a, name: A, host: 10.0.0.1, "k\\e]0;x\\a": 1}\n', "points[0]", "key '"),
        ('thresholds: {"r\\e[2J": 1}\n', "thresholds", "key 'r\\x1b[2J'"),
        (
            'points:\n  - {id: a, name: A, host: 10.0.0.1, level: "x\\e"}\n',
            "points[0].level",
            "x\\x1b",
        ),
        ('maintenance:\n  - {points: [a], reason: "x\\x07"}\n', "maintenance[0].reason", "x\\x07"),
        ('points:\n  - {id: a, name: "A\\tB", host: 10.0.0.1}\n', "points[0].name", "A\\tB"),
        (
            "points:\n  - id: a\n    name: |\n      two\n      lines\n",
            "points[0].name",
            "line break",
        ),
    ],
    ids=["esc-name", "cr", "bidi", "c1-csi", "key", "profile", "level", "bell", "tab", "block"],
)
def test_control_characters_are_refused_and_shown_escaped(
    text: str, field: str, shown: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """ESC in a name cleared the operator's screen through check-config; a CR broke /metrics.
    Any text or key with a control character is refused, the value shown escaped."""
    line = one_problem(ROOM + text)
    assert f": {field}: " in line and shown in line
    path = tmp_path / "bad.yaml"
    path.write_text(ROOM + text, encoding="utf-8")
    code, out, err = check_config(path, capsys)
    assert code == 2 and out == ""
    assert not has_control(err.replace("\n", "")) and err.count("\n") == 1


def test_error_messages_never_print_a_value_raw_or_whole() -> None:
    """A 1 MB value or key is cut to a readable line; an odd key is escaped in the path."""
    big = "9" * 1_000_000
    rest = ROOM + "points:\n  - " + point("a", profile="room") + "\n"
    line = one_problem(f"monitor: {{fail_after: '{big}'}}\n" + rest)
    assert "(999920 more characters)" in line and len(line) < 300
    line = one_problem(f"monitor:\n  ? '{big}'\n  : 1\n" + rest)  # an explicit key: no length cap
    assert "unknown key" in line and len(line) < 600


def test_check_config_prints_names_as_text_not_markup(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A name with rich markup (`[/bold]`) crashed the summary with MarkupError; emoji codes
    were replaced. A file name with ESC in it is shown escaped."""
    path = tmp_path / "x\x1b[2J.yaml"
    path.write_text(
        'monitor: {name: "Hội [red]x :smile:"}\n'
        + ROOM
        + 'points:\n  - {id: a, name: "[/bold] [link=x]y", host: 10.0.0.1, profile: room}\n',
        encoding="utf-8",
    )
    code, out, err = check_config(path, capsys)
    assert code == 0, err
    assert "x\\x1b[2J.yaml:" in out and "Hội [red]x :smile:" in out
    assert "[/bold] [link=x]y" in out and "\x1b" not in out


# --- 5. messages that named the wrong thing --------------------------------------------------


def maintenance(window: str) -> str:
    return (
        ROOM
        + f"maintenance:\n  - {window}\n"
        + "points:\n  - {id: a, name: A, host: 10.0.0.1, profile: room}\n"
    )


def test_keys_are_named_as_written_not_as_attributes() -> None:
    """`did you mean 'from_'?` leaked the attribute name; and `from_:` was accepted."""
    line = one_problem(maintenance("{points: [a], fromm: '22:00', to: '02:00'}"))
    assert "fromm: unknown key (did you mean 'from'?); expected one of: points, reason," in line
    assert "from_" not in line
    line = one_problem(maintenance("{points: [a], from_: '22:00', to: '02:00'}"))
    assert "maintenance[0].from_: unknown key (did you mean 'from'?)" in line


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (
            "{points: [a], start: 2026-01-01, end: 2026-01-02}",
            "'2026-01-01' has no time of day: write e.g. 2026-01-01 08:00",
        ),
        (
            "{points: [a], start: !!timestamp 2026-01-01, end: 2026-01-02 09:00}",
            "2026-01-01 has no time of day: write e.g. 2026-01-01 08:00",
        ),
        (
            "{points: [a], start: 2026-13-01 08:00, end: 2026-01-02 09:00}",
            "'2026-13-01 08:00' is not a date and time",
        ),
        (
            "{points: [a], from: 1000000:39, to: '02:00'}",
            "'1000000:39' is not a time of day: write HH:MM (00:00 to 23:59)",
        ),
        ("{points: [a], from: 24:00, to: '02:00'}", "'24:00' is not a time of day"),
        ("{points: [a], from: 2200, to: '02:00'}", "2200 is not a time of day"),
    ],
)
def test_dates_and_times_are_quoted_as_written(window: str, message: str) -> None:
    """`datetime.date(2026, 1, 1) is not a date and time` and `'16666666:39' is not a time of
    day` named values the user never wrote."""
    assert message in problems(maintenance(window))[-1]


def test_unquoted_times_and_dates_mean_what_they_say() -> None:
    """YAML 1.1 reads 22:00 as 1320 and 2026-11-26 08:00:00 as a datetime; both load as written."""
    inv = parse_inventory(
        maintenance("{points: [a], from: 22:00, to: 7:30}").replace(
            "points:\n  - {id: a",
            "  - {points: [a], start: 2026-11-26 08:00:00, end: 2026-11-26T12:00}\n"
            "points:\n  - {id: a",
        )
    )
    assert inv.maintenance[0].from_ == "22:00" and inv.maintenance[0].to == "07:30"
    assert inv.maintenance[1].start == "2026-11-26 08:00"
    assert inv.maintenance[1].end == "2026-11-26 12:00"


@pytest.mark.parametrize(
    ("yaml_text", "value"),
    [
        ("12:30", "12:30"),
        ("No", "No"),
        ("off", "off"),
        ("2026-01-01", "2026-01-01"),
        ("1_0", "1_0"),
    ],
)
def test_plain_values_stay_the_text_written(yaml_text: str, value: str) -> None:
    """A name `12:30` was the number 750, `No` was false, `2026-01-01` a date."""
    inv = parse_inventory(
        ROOM + f"points:\n  - {{id: a, name: {yaml_text}, host: 10.0.0.1, profile: room}}\n"
    )
    assert inv.points["a"].name == value


def test_a_number_where_text_belongs_says_to_quote_it() -> None:
    line = one_problem(ROOM + "points:\n  - {id: a, name: 123, host: 10.0.0.1, profile: room}\n")
    assert line.endswith("points[0].name: expected text, got 123; put it in quotes")
    line = one_problem(
        "monitor: {interval: 1:30}\n" + ROOM + "points:\n  - " + point("a", profile="room")
    )
    assert "monitor.interval: '1:30' is not a duration" in line


# --- 6. spreadsheets -------------------------------------------------------------------------

HEADER = "id,name,parent,host,profile\n"


def sheet_problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        read_csv(text.encode("utf-8"), "s.csv")
    return exc.value.lines()


def test_a_duplicate_column_is_refused_not_silently_won() -> None:
    """`host` twice: the second column silently won."""
    assert sheet_problems("id,name,parent,host,profile,host\na,A,,10.0.0.1,meeting-room,x\n") == [
        "s.csv:1: header: column 'host' appears twice: keep one"
    ]


def test_an_unterminated_quote_is_a_csv_syntax_error_with_its_line() -> None:
    """It was reported as a bad host two lines on."""
    assert sheet_problems(
        HEADER + 'a,A,,10.0.0.1,meeting-room\nb,"B,,10.0.0.2,\nc,C,,1.1.1.1,\n'
    ) == [
        "s.csv:3: CSV syntax error: a quoted cell opened on line 3 is never closed (a '\"' is missing)"
    ]


def test_every_bad_cell_of_every_row_is_reported() -> None:
    """Only the first of two bad fields in a row was reported."""
    lines = sheet_problems(
        HEADER + "Bad Id,A,,10.0.0.300,meeting-rom\nb,B,zz,10.0.0.2,nope\nc,C,,10.0.0.3,\n"
    )
    assert [line.split(": ")[0] for line in lines] == [
        "s.csv:2",
        "s.csv:2",
        "s.csv:2",
        "s.csv:3",
        "s.csv:3",
        "s.csv:4",
    ]
    text = "\n".join(lines)
    for part in (
        "points[0].host: '10.0.0.300'",
        "points[0].id: 'Bad Id'",
        "points[0].profile: unknown profile 'meeting-rom' (did you mean 'meeting-room'?)",
        "points[1].parent: parent 'zz' is not the id of any point",
        "points[1].profile: unknown profile 'nope'",
        "points[2]: no profile",
    ):
        assert part in text


def test_a_semicolon_sheet_and_a_non_mapping_base_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A sheet saved with ';' and a --base that is a list (which crashed dict()) are one line."""
    assert sheet_problems("id;name;parent;host;profile\na;A;;10.0.0.1;x\n") == [
        "s.csv:1: header: the cells are separated by ';': export the sheet as 'CSV UTF-8', with"
        " ',' between cells"
    ]
    base = tmp_path / "base.yaml"
    base.write_text("- a\n", encoding="utf-8")
    sheet = tmp_path / "s.csv"
    sheet.write_text(HEADER + "a,A,,10.0.0.1,meeting-room\n", encoding="utf-8")
    assert main(["inventory", "import", str(sheet), "--base", str(base)]) == 2
    assert capsys.readouterr().err == f"{base}:1: expected a mapping with 'profiles:' at the top\n"


def test_names_that_spreadsheets_would_run_are_exported_guarded_and_import_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`=cmd|' /C calc'!A0` was exported as a live formula. Now every such cell starts with
    `'`, and import gives back exactly the names exported."""
    names = ["=cmd|' /C calc'!A0", "+1+1", "-2", "@SUM(A1)", "'quoted", "''twice", "plain"]
    rows = "".join(
        f"  - {{id: p{i}, name: {json.dumps(n)}, host: 10.0.0.{i + 1}"
        + (", profile: room}\n" if i == 0 else ", parent: p0}\n")
        for i, n in enumerate(names)
    )
    inv = parse_inventory(ROOM + "points:\n" + rows)
    sheet = to_csv(inv)
    cells = [line.split(",") for line in sheet.splitlines()[1:]]
    for line in sheet.splitlines()[1:]:
        # the name is the second cell; csv quoting may wrap it, the guard comes first
        name_cell = line.split(",", 1)[1].lstrip('"')
        assert not name_cell.startswith(("=", "+", "-", "@")), line
    assert len(cells) == len(names)
    again = read_csv(sheet.encode("utf-8"), "s.csv", parse_inventory_source(ROOM))
    assert [p.name for p in again.points.values()] == names


def parse_inventory_source(text: str) -> Any:
    from monitor.inventory.source import parse_yaml

    return parse_yaml(text, "base.yaml")


def test_a_sheet_is_read_under_the_config_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CSV was read whole with read_bytes(): a FIFO hung, /dev/zero grew without end."""
    fifo = tmp_path / "s.csv"
    os.mkfifo(fifo)
    assert main(["inventory", "import", str(fifo)]) == 2
    assert capsys.readouterr().err == (
        f"{fifo}: cannot read file: is a FIFO (named pipe), not a regular file\n"
    )
    assert main(["inventory", "import", "/dev/zero"]) == 2
    assert "is a device" in capsys.readouterr().err


def test_hanoi_still_loads_unchanged() -> None:
    """The stricter reader changes nothing for the shipped inventory."""
    inv = load_inventory(Path(__file__).parents[2] / "configs" / "hanoi.yaml")
    assert len(inv.points) == 450


def test_mapped_ipv4_and_spaced_hosts_get_no_way_round_the_host_rules() -> None:
    from monitor.inventory.units import parse_host

    for host, why in [
        ("::ffff:0.0.0.0", "unspecified"),
        ("::ffff:255.255.255.255", "broadcast"),
        ("::ffff:224.0.0.1", "multicast"),
        ("127.76 .0.1", "holds a space"),
        ("127.76.0.1 x", "holds a space"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_host(host)
    assert parse_host("::ffff:127.0.0.1") == "::ffff:7f00:1"
