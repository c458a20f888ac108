"""Hostile probe targets and body patterns: one clear line and exit 2, never a traceback or a hang.

Targets go through the one parser every probe kind uses
(:mod:`monitor.probes.target`); ``body_regex`` through RE2
(:mod:`monitor.probes.pattern`), checked against a real aiohttp server with a
pattern that would backtrack for centuries under Python's ``re``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.commands.probe import build_settings
from monitor.errors import UsageError
from monitor.inventory import load_inventory
from monitor.inventory.units import parse_host
from monitor.probes import http
from monitor.probes.registry import PROBE_TYPES, SPECS
from monitor.probes.target import parse_target, parse_url

HOST = "127.62.0.1"  # this module's loopback block: 127.62.0.0/16


async def confmon(*args: str, within: float = 60) -> tuple[int, str, str]:
    """``confmon ARGS`` in a real process: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), within)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# --- the examples of the issue, through the real command ---------------------------------


@pytest.mark.parametrize(
    ("kind", "target", "message"),
    [
        ("http", "127.0.0.1:99999", "'127.0.0.1:99999': port 99999 is out of range (1-65535)"),
        ("http", ":abc", "':abc': no host before ':'"),
        ("tcp", "127.0.0.1 :5060", "'127.0.0.1 :5060': a space before ':': write host:port"),
        ("http", "http://[::1/", "'http://[::1/': unclosed '['"),
        ("http", "http://127.0.0.1:99999/", "port 99999 is out of range (1-65535)"),
        ("http", "http://127.0.0.1:abc/", "the port 'abc' is not a number"),
        ("http", "http://127.0.0.1:0/", "port 0 is out of range"),
        ("http", "http://u:pw@127.0.0.1/", "credentials in the URL are not supported"),
        ("http", "http://::1/", "an IPv6 address in a URL goes in brackets"),
        ("tcp", "[::1", "'[::1': unclosed '['"),
        ("tcp", "[::1]:abc", "'[::1]:abc': the port 'abc' is not a number"),
        ("tcp", "[::1]:70000", "port 70000 is out of range"),
        ("tcp", "127.0.0.1:²", "the port '²' is not a number"),
        ("sip", "::1:5060", "ambiguous: write [::1]:5060 for port 5060 of ::1, or [::1:5060]"),
        ("media", "::1:50600", "written in brackets: [::1]:50600"),
        ("icmp", "127.0.0.1:7", "icmp has no port"),
        ("tcp", "\x1b[2J:80", "'\\x1b[2J:80'"),
    ],
)
async def test_bad_targets_are_one_line_and_exit_2(kind: str, target: str, message: str) -> None:
    """Each malformed target says what is wrong with it (not 'needs a port'), exit 2."""
    code, out, err = await confmon("probe", kind, target)
    assert (code, out) == (2, ""), err
    assert len(err.splitlines()) == 1 and message in err, err
    assert "Traceback" not in err and "\x1b" not in err


def test_brackets_say_which_of_the_two_an_ipv6_target_means() -> None:
    """[::1]:5060 is port 5060 of ::1; [::1:5060] is the address; icmp takes ::1:5060 as is."""
    assert parse_target("[::1]:5060") == parse_target("[::1]:5060", takes_port=True)
    assert (parse_target("[::1]:5060").host, parse_target("[::1]:5060").port) == ("::1", 5060)
    assert (parse_target("[::1:5060]").host, parse_target("[::1:5060]").port) == ("::1:5060", None)
    assert parse_target("::1:5060", takes_port=False).host == "::1:5060"
    # a full eight-group address or one whose tail cannot be a port is never ambiguous
    assert parse_target("2001:db8:0:0:0:0:0:1").host == "2001:db8::1"
    assert parse_target("2001:db8::1").host == "2001:db8::1"
    host, values = build_settings("sip", "[::1]:5070", [])
    assert host == "::1" and values.port == 5070  # type: ignore[attr-defined]


def test_a_url_names_scheme_host_port_and_path() -> None:
    """The URL's parts become settings; a fragment is dropped, a zone %25 is a '%'."""
    url = parse_url("https://[fe80::1%25eth0]:8443/status?x=1#top")
    assert (url.scheme, url.target.host, url.target.port, url.path) == (
        "https",
        "fe80::1%eth0",
        8443,
        "/status?x=1",
    )
    assert parse_url("HTTP://Example.ORG").target.host == "example.org"


# --- the class: any string is a valid target or one UsageError line ---------------------

target_texts = st.one_of(
    st.text(alphabet="[]:0123456789abcdef.%-/@ xX²٣\x1b", max_size=24),
    st.builds(
        lambda scheme, rest: scheme + rest,
        st.sampled_from(["http://", "https://", "ftp://", "http:/", "http://["]),
        st.text(alphabet="[]:0123456789abf.%/@?#", max_size=20),
    ),
    st.text(max_size=30),
)


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from(PROBE_TYPES), target=target_texts)
def test_any_target_is_valid_or_one_usage_line(kind: str, target: str) -> None:
    """build_settings gives a valid host and port, or a one-line UsageError: nothing else."""
    try:
        host, values = build_settings(kind, target, [])
    except UsageError as exc:
        message = str(exc)
        assert message and "\n" not in message and "\r" not in message and "\x1b" not in message
        assert len(message) < 400
        return
    assert parse_host(host) == host
    port = getattr(values, "port", None)
    assert port is None or 1 <= port <= 65535
    if not SPECS[kind].takes_port:
        assert ":" not in target.strip() or _is_ip6(target.strip().strip("[]"))


def _is_ip6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


hosts = st.one_of(
    st.ip_addresses().map(str),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}[a-z0-9](\.[a-z][a-z0-9]{0,5}){0,2}", fullmatch=True),
)


def _acceptable(host: str) -> bool:
    try:
        parse_host(host)
    except ValueError:
        return False  # multicast, 0.0.0.0, ...: refused as a host, whatever the spelling
    return True


@settings(max_examples=200, deadline=None)
@given(host=hosts.filter(_acceptable), port=st.integers(1, 65535))
def test_written_targets_read_back(host: str, port: int) -> None:
    """host:port and [IPv6]:port, as the docs write them, give back the host and the port."""
    written = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    target = parse_target(written)
    assert (target.host, target.port) == (parse_host(host), port)
    assert parse_target(f"[{host}]" if ":" in host else host).port is None


# --- body_regex: RE2, bounded, off the loop, against a real server ------------------------

StartServer = Callable[[], Awaitable[int]]


@pytest.fixture
async def evil_server() -> AsyncIterator[StartServer]:
    """An aiohttp server on 127.62.0.1 whose pages invite catastrophic backtracking."""
    runners: list[web.AppRunner] = []

    async def a60b(request: web.Request) -> web.Response:
        return web.Response(text="a" * 60 + "b")

    async def many_a(request: web.Request) -> web.Response:
        return web.Response(text="a" * (http.MATCH_LIMIT - 1) + "!" + "a" * 4096 + "NEEDLE")

    async def start() -> int:
        app = web.Application()
        app.router.add_get("/a60b", a60b)
        app.router.add_get("/many", many_a)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0)
        await site.start()
        runners.append(runner)
        return int(runner.addresses[0][1])

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_catastrophic_regex_answers_correctly_in_a_real_probe(
    evil_server: StartServer,
) -> None:
    """(a+)+$ on 60 a's and a b (centuries for a backtracking engine): a prompt, right answer."""
    port = await evil_server()
    url = f"http://{HOST}:{port}/a60b"
    code, out, err = await confmon(
        "probe", "http", url, "-o", "body_regex=(a+)+$", "-o", "timeout=10s", within=20
    )
    assert code == 1, err
    assert "body does not match /(a+)+$/" in out.splitlines()[0]
    code, out, err = await confmon(
        "probe", "http", url, "-o", "body_regex=^(a+)+b$", "-o", "timeout=10s", within=20
    )
    assert code == 0, out + err


async def test_only_the_first_match_limit_bytes_are_matched(evil_server: StartServer) -> None:
    """A body past MATCH_LIMIT is not searched: '!' at the limit's last byte is found,
    NEEDLE after it is not."""
    port = await evil_server()
    from monitor.inventory.model import HttpSettings
    from monitor.probes.base import ProbeContext

    async with ProbeContext() as ctx:
        seen = await http.probe(
            HOST, HttpSettings(port=port, path="/many", body_regex="!", timeout=10), ctx
        )
        missed = await http.probe(
            HOST, HttpSettings(port=port, path="/many", body_regex="NEEDLE", timeout=10), ctx
        )
    assert seen.ok, seen.error
    assert missed.error == "body does not match /NEEDLE/"
    assert missed.details["bytes"] > http.MATCH_LIMIT  # read, but not matched


async def test_peer_text_is_shown_as_is_not_interpreted() -> None:
    """A Server header with rich markup and an escape sequence: printed escaped, exit 0.

    aiohttp's server will not send such a header, so a raw one does."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\nServer: [/x] [bold]\x1b]0;owned\x07\r\n"
            b"Content-Length: 2\r\nConnection: close\r\n\r\nok"
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    try:
        code, out, err = await confmon("probe", "http", f"http://{HOST}:{port}/")
    finally:
        server.close()
        await server.wait_closed()
    assert "\x1b" not in out and "\x07" not in out and "Traceback" not in err
    if code == 0:  # the client took the header: shown escaped, the markup as text
        assert "[/x] [bold]\\x1b]0;owned\\x07" in out, out
    else:  # the client refused the header: a failed probe, said in one line
        assert code == 1 and "FAILED" in out.splitlines()[0], out + err


@pytest.mark.parametrize(
    ("regex", "why"),
    [
        (r"(ok)\1", "backreferences are not supported"),
        (r"ok(?=!)", "look-ahead and look-behind are not supported"),
        ("(", "missing )"),
    ],
)
def test_a_pattern_re2_cannot_run_is_a_config_error(tmp_path: Path, regex: str, why: str) -> None:
    """At load, not at the first probe: the field, the pattern and why, exit 2."""
    config = tmp_path / "inv.yaml"
    config.write_text(
        "profiles:\n"
        "  room:\n"
        f"    http: {{port: 8080, body_regex: '{regex}'}}\n"
        "points:\n"
        "  - {id: a, name: A, host: 10.0.0.1, profile: room}\n",
        encoding="utf-8",
    )
    with pytest.raises(Exception) as caught:
        load_inventory(str(config))
    error = caught.value
    assert getattr(error, "exit_code", None) == 2
    first = str(error)
    assert "body_regex" in first and "is not a pattern RE2 can run" in first and why in first


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("body_regex=(a)\\1", "backreferences are not supported"),
        ("path=/a b", "holds a space or a control character"),
        ("path=/a\r\nX-Evil: 1", "holds a space or a control character"),
    ],
)
async def test_bad_http_settings_on_the_command_line(option: str, message: str) -> None:
    """-o body_regex / path that cannot be used: one line, exit 2, before any request."""
    code, out, err = await confmon("probe", "http", "127.0.0.1", "-o", option)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and message in err, err
