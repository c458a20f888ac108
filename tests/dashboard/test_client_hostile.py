"""The dashboard against a hostile or wrong monitor: said at once, in one line, never raw text.

A real aiohttp server on 127.62.2.1 plays the monitor's API: refusing the token,
answering HTML, 40 MB, JSON of the wrong shape, or names holding escape
sequences; ``write_snapshot`` and ``confmon dashboard`` are run against it.
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from monitor.dashboard.app import run_dashboard, write_snapshot
from monitor.dashboard.client import MAX_ANSWER, TokenRefused, Unreachable
from monitor.dashboard.model import BadAnswer, Snapshot
from monitor.dashboard.view import render
from monitor.errors import ConfmonError
from tests.helpers import free_port

HOST = "127.62.2.1"
ESC = "\x1b[2J\x1b]0;owned\x07"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def status(name: str = "Hội nghị") -> dict[str, Any]:
    return {
        "name": name,
        "states": {"up": 1, "down": 1},
        "readiness": 0.5,
        "readiness_target": 0.98,
    }


def points(name: str = "Quận Ba Đình", reason: str = "") -> dict[str, Any]:
    return {
        "points": [
            {
                "id": "ba-dinh",
                "name": name,
                "district": "ba-dinh",
                "parent": None,
                "level": "district",
                "state": "up",
                "since": 1_800_000_000.0,
                "reason": "",
                "metrics": {"rtt": 0.01, "jitter": 0.001, "loss": 0.0, "mos": 4.4},
            },
            {
                "id": "ba-dinh.phuc-xa",
                "name": name + " 2",
                "district": "ba-dinh",
                "parent": "ba-dinh",
                "level": "commune",
                "state": "down",
                "since": 1_800_000_000.0,
                "reason": reason,
                "metrics": {"rtt": None, "jitter": None, "loss": None, "mos": None},
            },
        ]
    }


def events(name: str = "Phường Phúc Xá", reason: str = "") -> dict[str, Any]:
    return {
        "events": [
            {
                "id": 7,
                "at": 1_800_000_000.0,
                "point": "ba-dinh.phuc-xa",
                "name": name,
                "from": "up",
                "to": "down",
                "reason": reason,
                "metrics": {},
            }
        ]
    }


async def stream(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    await resp.write(b": hello\n\n")
    await asyncio.sleep(30)
    return resp


def answer(data: Any) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(data)

    return handler


@pytest.fixture
async def monitor() -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """Start a fake monitor with the given handlers (the rest answer well); yields its URL."""
    runners: list[web.AppRunner] = []

    async def start(**overrides: Handler) -> str:
        routes: dict[str, Handler] = {
            "status": answer(status()),
            "points": answer(points()),
            "events": answer(events()),
            "stream": stream,
        }
        routes.update(overrides)
        app = web.Application()
        for name, handler in routes.items():
            app.router.add_get(f"/api/v1/{name}", handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        await web.TCPSite(runner, HOST, 0).start()
        runners.append(runner)
        return f"http://{HOST}:{runner.addresses[0][1]}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def snapshot_to(path: Path, url: str, **kwargs: Any) -> None:
    """write_snapshot with a wait far longer than the test's own bound: 'at once' is checked."""
    async with asyncio.timeout(30):
        await write_snapshot(url, path, wait=120, **kwargs)


async def test_refused_token_is_said_at_once(
    monitor: Callable[..., Awaitable[str]], tmp_path: Path
) -> None:
    """401: 'the monitor refused the token', exit code 2, without waiting for the timeout."""

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": "unauthorised"}, status=401)

    url = await monitor(status=refuse, points=refuse)
    with pytest.raises(TokenRefused) as caught:
        await snapshot_to(tmp_path / "x.svg", url, token="wrong")
    assert "the monitor refused the token" in str(caught.value)
    assert caught.value.exit_code == 2
    with pytest.raises(TokenRefused, match="the monitor wants a token"):
        await snapshot_to(tmp_path / "x.svg", url)
    assert not (tmp_path / "x.svg").exists()


async def test_live_dashboard_ends_on_a_refused_token(
    monitor: Callable[..., Awaitable[str]],
) -> None:
    """The live screen does not retry a token that will never work: it ends, saying why."""

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": "unauthorised"}, status=401)

    url = await monitor(status=refuse, points=refuse)
    console = Console(file=io.StringIO(), width=100, height=30)
    with pytest.raises(TokenRefused):
        async with asyncio.timeout(30):
            await run_dashboard(url, token="wrong", console=console)


async def test_refused_connection_is_said_at_once(tmp_path: Path) -> None:
    """Nothing listening: 'connection refused' in one line, exit code 1, at once."""
    url = f"http://{HOST}:{free_port(host=HOST)}"
    with pytest.raises(Unreachable) as caught:
        await snapshot_to(tmp_path / "x.txt", url)
    assert "connection refused" in str(caught.value) and caught.value.exit_code == 1


async def test_a_silent_server_waits_its_bounded_timeout(
    monitor: Callable[..., Awaitable[str]], tmp_path: Path
) -> None:
    """Only a server that does not answer makes the snapshot wait, and only as long as asked."""

    async def silent(request: web.Request) -> web.Response:
        await asyncio.sleep(60)
        return web.json_response({})

    url = await monitor(status=silent)
    async with asyncio.timeout(30):
        with pytest.raises(ConfmonError, match=r"no answer from .* within 1s"):
            await write_snapshot(url, tmp_path / "x.txt", wait=1)


async def _html(request: web.Request) -> web.Response:
    return web.Response(
        text="<html><body>[/red] proxy login</body></html>", content_type="text/html"
    )


async def _huge(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    await resp.write(b'{"points": [')
    chunk = b'"' + b"x" * (1 << 20) + b'",'
    for _ in range((MAX_ANSWER >> 20) + 8):
        await resp.write(chunk)
    return resp


async def _deep(request: web.Request) -> web.Response:
    return web.Response(text="[" * 100_000 + "]" * 100_000, content_type="application/json")


@pytest.mark.parametrize(
    ("route", "handler", "message"),
    [
        ("points", _html, "the answer is not JSON"),
        ("points", _huge, "larger than 32 MiB"),
        ("points", _deep, "nested too deeply"),
        ("points", answer([1, 2, 3]), "has no 'points'"),
        ("points", answer({"points": {"a": 1}}), "the points is not a JSON list"),
        ("points", answer({"points": [{"id": 5}]}), "a point's id is not a string"),
        (
            "points",
            answer({"points": [{"id": "a", "name": ["x"], "district": "a"}]}),
            "name is not a string",
        ),
        ("status", answer(["ok"]), "the status is not a JSON object"),
        ("status", answer({"readiness": "high"}), "the readiness is not a number"),
        ("status", answer({"readiness": 1e308 * 10}), "the readiness is out of range"),
        ("status", answer({"states": {"up": -1}}), "out of range"),
        ("status", answer({"agents": [3]}), "an agent is not a JSON object"),
        (
            "events",
            answer({"events": [{"point": "a", "at": 1e300}]}),
            "an event's time is out of range",
        ),
        ("events", answer({"events": "none"}), "the events is not a JSON list"),
    ],
)
async def test_a_wrong_answer_is_one_line(
    monitor: Callable[..., Awaitable[str]],
    tmp_path: Path,
    route: str,
    handler: Handler,
    message: str,
) -> None:
    """HTML, 40 MB, deep or wrongly shaped JSON: 'unexpected answer from the monitor: ...'."""
    url = await monitor(**{route: handler})
    with pytest.raises(Unreachable) as caught:
        await snapshot_to(tmp_path / "x.txt", url)
    text = str(caught.value)
    assert "unexpected answer from the monitor" in text and message in text, text
    assert "\n" not in text


async def test_names_from_the_monitor_cannot_drive_the_terminal(
    monitor: Callable[..., Awaitable[str]], tmp_path: Path
) -> None:
    """ESC sequences in names and reasons reach neither a .txt nor an .svg snapshot raw."""
    url = await monitor(
        status=answer(status(name="Hội nghị" + ESC)),
        points=answer(points(name="Quận" + ESC, reason="lost" + ESC)),
        events=answer(events(name="Phường" + ESC, reason=ESC)),
    )
    for suffix in (".txt", ".svg", ".html"):
        path = tmp_path / f"frame{suffix}"
        await snapshot_to(path, url, width=120, height=40)
        text = path.read_text(encoding="utf-8")
        assert "\x1b" not in text and "\x07" not in text
        assert "\\x1b[2J" in text  # shown, escaped, so the operator sees what was sent


async def test_an_unknown_state_reads_as_unknown() -> None:
    """A state the dashboard does not know is shown as unknown rather than breaking the sort."""
    snap = Snapshot()
    data = points()
    data["points"][1]["state"] = "exploded"
    snap.apply_points(data["points"])
    assert snap.points["ba-dinh.phuc-xa"].state == "unknown"
    assert [p.id for p in snap.attention()] == ["ba-dinh.phuc-xa"]


# --- the class: any JSON the server sends is applied or a BadAnswer, and then renders -----

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
point_keys = st.sampled_from(
    ["id", "name", "district", "parent", "level", "state", "since", "reason", "metrics"]
)
points_like = st.lists(
    st.dictionaries(point_keys, json_values | st.sampled_from(["up", "down", "ba-dinh", 1.8e9])),
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(
    status_data=json_values
    | st.dictionaries(
        st.sampled_from(["name", "states", "readiness", "readiness_target", "scheduler", "agents"]),
        json_values,
    ),
    points_data=json_values | points_like,
    event_data=json_values
    | st.lists(
        st.dictionaries(
            st.sampled_from(["id", "at", "point", "name", "from", "to", "reason", "metrics"]),
            json_values,
        )
    ),
)
def test_any_answer_is_applied_or_refused_and_then_renders(
    status_data: Any, points_data: Any, event_data: Any
) -> None:
    """Random JSON in every answer: applied and rendered, or BadAnswer; never another error."""
    snap = Snapshot(connected=True)
    for apply, data in (
        (snap.apply_points, points_data),
        (snap.apply_summary, status_data),
        (snap.apply_events, event_data),
        (
            snap.apply_state,
            event_data[0] if isinstance(event_data, list) and event_data else event_data,
        ),
    ):
        try:
            apply(data)
        except BadAnswer as exc:
            assert "\n" not in str(exc)
    assert math.isfinite(snap.readiness)
    for width, height in ((120, 40), (80, 24), (40, 10)):
        console = Console(width=width, height=height, file=io.StringIO(), record=True)
        console.print(render(snap, width, height, now=1_800_000_000.0))
        assert "\x1b" not in console.export_text()


# --- the command line: bad options refused before anything is read ---------------------


async def _confmon(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "junk"], "'junk' is not an http:// or https:// URL"),
        (["--url", "http://[::1:9108"], "unclosed '['"),
        (["--url", "http://127.0.0.1:99999"], "port 99999 is out of range"),
        (["--url", "http://127.0.0.1:9108/?x=1"], "a base URL has no query"),
        (["--width", "0"], "'0' is out of range (40..1000)"),
        (["--width", "-5"], "out of range"),
        (["--width", "100000"], "out of range"),
        (["--height", "nan"], "is not a whole number"),
        (["--refresh", "inf"], "is not a finite number"),
        (["--tz", "Mars/Olympus"], "is not a known time zone"),
        (["--token", ""], "--token is empty"),
        (["--token", "sai mật khẩu"], "printable ASCII without spaces"),
    ],
)
async def test_bad_dashboard_options_exit_2_at_once(
    args: list[str], message: str, tmp_path: Path
) -> None:
    """Refused before any connection: one line on stderr, exit 2."""
    code, err = await _confmon("dashboard", "--snapshot", str(tmp_path / "x.svg"), *args)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "x.svg").exists()


async def test_refused_token_through_the_command(
    monitor: Callable[..., Awaitable[str]], tmp_path: Path
) -> None:
    """confmon dashboard --snapshot against a 401: one line, exit 2."""

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"error": "unauthorised"}, status=401)

    url = await monitor(status=refuse, points=refuse)
    code, err = await _confmon(
        "dashboard", "--url", url, "--token", "wrong", "--snapshot", str(tmp_path / "x.svg")
    )
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "the monitor refused the token" in err


def test_json_module_is_what_the_client_parses_with() -> None:
    """Sanity: Python's json reads NaN and 1e999, which the model must refuse as numbers."""
    assert math.isnan(json.loads("NaN")) and math.isinf(json.loads("1e999"))
    snap = Snapshot()
    with pytest.raises(BadAnswer):
        snap.apply_summary(json.loads('{"readiness": NaN}'))


async def _breaking_stream(request: web.Request) -> web.StreamResponse:
    """A stream that says hello, then sends a malformed state and hangs up."""
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    hello = json.dumps({**status(), "type": "hello"}).encode()
    await resp.write(b"event: hello\ndata: " + hello + b"\n\nevent: state\ndata: {}\n\n")
    return resp


async def test_a_stream_that_breaks_at_once_never_hangs_the_snapshot(
    monitor: Callable[..., Awaitable[str]], tmp_path: Path
) -> None:
    """The stop must not be lost while the failed stream's refresher is cleaned up (a
    snapshot hung for ever in 2 of 4 tries before)."""
    url = await monitor(stream=_breaking_stream)
    for i in range(6):
        path = tmp_path / f"s{i}.txt"
        await snapshot_to(path, url)
        assert path.read_text(encoding="utf-8")
