"""The HTTP probe against real aiohttp servers on loopback, plain and TLS (openssl-made certs)."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from monitor.core.results import ProbeResult
from monitor.inventory.model import HttpSettings
from monitor.probes import http
from monitor.probes.base import ProbeContext
from tests.helpers import free_port, require_binary

PLAIN_PHASES = ["resolve", "connect", "request", "first_byte", "body"]
TLS_PHASES = ["resolve", "connect", "tls", "request", "first_byte", "body"]
NEEDLE_AT = http.BODY_LIMIT + 1000


@dataclass(frozen=True)
class Cert:
    """A self-signed certificate made by the openssl CLI."""

    cert: Path
    key: Path

    def der(self) -> bytes:
        return ssl.PEM_cert_to_DER_cert(self.cert.read_text())

    def openssl_not_after(self) -> float:
        """notAfter as openssl itself prints it, in Unix seconds."""
        out = subprocess.run(
            ["openssl", "x509", "-noout", "-enddate", "-in", str(self.cert)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return float(ssl.cert_time_to_seconds(out.strip().removeprefix("notAfter=")))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_cert(directory: Path, days: int) -> Cert:
    openssl = require_binary("openssl")
    cert, key = directory / f"cert-{days}.pem", directory / f"key-{days}.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-nodes", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", str(key), "-out", str(cert), "-days", str(days),
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return Cert(cert, key)


@pytest.fixture(scope="session")
def cert_10_days(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """Valid for 10 days: notAfter is a UTCTime."""
    return make_cert(tmp_path_factory.mktemp("tls"), 10)


@pytest.fixture(scope="session")
def cert_2080(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    """Valid for 20,000 days (past 2050): notAfter is a GeneralizedTime."""
    return make_cert(tmp_path_factory.mktemp("tls"), 20_000)


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="Điểm cầu Huyện Ba Vì: sẵn sàng")


async def error(request: web.Request) -> web.Response:
    return web.Response(status=500, text="boom")


async def no_content(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound("/")


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(30)  # cancelled when the client goes away (handler_cancellation)
    return web.Response(text="late")


async def big(request: web.Request) -> web.Response:
    return web.Response(body=b"a" * NEEDLE_AT + b"NEEDLE")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/error", error)
    app.router.add_get("/empty", no_content)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/slow", slow)
    app.router.add_get("/big", big)
    return app


StartServer = Callable[..., Awaitable[int]]


@pytest.fixture
async def server() -> AsyncIterator[StartServer]:
    """Start aiohttp servers (free port each, optional TLS); all are cleaned up afterwards."""
    runners: list[web.AppRunner] = []

    async def start(host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None) -> int:
        runner = web.AppRunner(
            make_app(), handler_cancellation=True, access_log=None, shutdown_timeout=0.5
        )
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, host, 0, ssl_context=ssl_context)
        await site.start()
        return int(runner.addresses[0][1])

    yield start
    for runner in runners:
        await runner.cleanup()


async def get(target: str, **settings: object) -> ProbeResult:
    async with ProbeContext() as ctx:
        return await http.probe(target, HttpSettings.model_validate(settings), ctx)


def assert_phases(result: ProbeResult, names: list[str]) -> None:
    assert [p.name for p in result.phases] == names
    assert all(p.ok and p.seconds is not None and p.seconds >= 0 for p in result.phases)
    total = sum(p.seconds or 0.0 for p in result.phases)
    assert total <= result.duration + 1e-3


async def test_ok_with_phases_in_order(server: StartServer) -> None:
    """A 200 from a plain server: ok, every phase present and timed, rtt = time to first byte."""
    port = await server()
    result = await get("127.0.0.1", port=port)
    assert result.ok, result.error
    assert result.probe == "http" and result.error is None
    assert_phases(result, PLAIN_PHASES)
    assert result.phases[0].detail == "address literal"
    assert result.rtt is not None and 0 < result.rtt < 1.0
    upto_first_byte = sum(p.seconds or 0.0 for p in result.phases[:4])
    assert result.rtt >= upto_first_byte - 1e-3
    assert result.details["status"] == 200
    assert result.details["url"] == f"http://127.0.0.1:{port}/"
    assert result.details["bytes"] == len("Điểm cầu Huyện Ba Vì: sẵn sàng".encode())
    assert "aiohttp" in str(result.details["server"])
    assert "cert_days_left" not in result.details


async def test_server_error_fails_naming_status(server: StartServer) -> None:
    """A 500 fails with the status and what was expected; the exchange itself completed."""
    port = await server()
    result = await get("127.0.0.1", port=port, path="/error")
    assert not result.ok
    assert result.error == "status 500 (expected 200-399)"
    assert_phases(result, PLAIN_PHASES)
    assert result.details["status"] == 500


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/empty", [204], None),
        ("/empty", [200], "status 204 (expected 200)"),
        ("/error", [500, 503], None),
        ("/", [201, 202], "status 200 (expected 201, 202)"),
    ],
)
async def test_status_list(
    server: StartServer, path: str, status: list[int], error: str | None
) -> None:
    """An explicit status list replaces the 200-399 default."""
    port = await server()
    result = await get("127.0.0.1", port=port, path=path, status=status)
    assert result.error == error
    assert result.ok is (error is None)


async def test_redirect_is_not_followed(server: StartServer) -> None:
    """A 302 is a status like any other: ok under 200-399, and the URL is not followed."""
    port = await server()
    result = await get("127.0.0.1", port=port, path="/redirect")
    assert result.ok
    assert result.details["status"] == 302
    assert str(result.details["url"]).endswith("/redirect")


@pytest.mark.parametrize(
    ("regex", "error"),
    [
        (r"Huyện Ba Vì: sẵn sàng$", None),
        (r"^Điểm cầu \w+ Ba", None),
        (r"không sẵn sàng", "body does not match /không sẵn sàng/"),
    ],
)
async def test_body_regex(server: StartServer, regex: str, error: str | None) -> None:
    """The body regex is searched in the decoded body (Vietnamese text, UTF-8)."""
    port = await server()
    result = await get("127.0.0.1", port=port, body_regex=regex)
    assert result.error == error


async def test_body_is_searched_only_in_first_mib(server: StartServer) -> None:
    """A match past 1 MiB is not found: only BODY_LIMIT bytes are read, the rest is dropped."""
    port = await server()
    result = await get("127.0.0.1", port=port, path="/big", body_regex="NEEDLE", timeout=5)
    assert result.error == "body does not match /NEEDLE/"
    assert result.details["bytes"] == http.BODY_LIMIT
    assert result.details["truncated"] is True
    whole = await get("127.0.0.1", port=port, path="/big", body_regex="^a+$", timeout=5)
    assert whole.ok, whole.error


async def test_slow_server_times_out_within_deadline(server: StartServer) -> None:
    """A server that never answers: 'timeout ... in first_byte' within the deadline + slack."""
    port = await server()
    result = await get("127.0.0.1", port=port, path="/slow", timeout=0.5)
    assert not result.ok
    assert result.error == "timeout after 0.5 s in first_byte"
    assert 0.45 <= result.duration < 0.5 + 0.5
    assert [p.name for p in result.phases] == ["resolve", "connect", "request", "first_byte"]
    assert not result.phases[-1].ok and result.rtt is None


async def test_connection_refused() -> None:
    """Nothing listening: 'connection refused', failing in the connect phase, quickly."""
    port = free_port()
    result = await get("127.0.0.1", port=port)
    assert not result.ok
    assert result.error == "connection refused"
    assert [(p.name, p.ok) for p in result.phases] == [("resolve", True), ("connect", False)]
    assert result.duration < 1.0


async def test_unresolvable_name() -> None:
    """A name in the reserved .invalid TLD fails in the resolve phase, naming the host."""
    result = await get("nowhere.invalid", timeout=5)
    assert not result.ok
    assert result.error is not None and result.error.startswith("cannot resolve nowhere.invalid")
    assert [(p.name, p.ok) for p in result.phases] == [("resolve", False)]


async def test_host_name_is_resolved_then_cached(server: StartServer) -> None:
    """'localhost' gets a timed resolve phase; the next probe on the same session hits the cache."""
    port = await server()
    async with ProbeContext() as ctx:
        settings = HttpSettings(port=port)
        first = await http.probe("localhost", settings, ctx)
        second = await http.probe("localhost", settings, ctx)
    assert first.ok and second.ok, (first.error, second.error)
    assert first.phases[0].name == "resolve" and first.phases[0].detail == ""
    assert second.phases[0].detail == "cached"
    assert first.details["url"] == f"http://localhost:{port}/"


async def test_ipv6_literal_in_brackets(server: StartServer) -> None:
    """An IPv6 target is put in brackets in the URL and probed over ::1."""
    port = await server(host="::1")
    result = await get("::1", port=port)
    assert result.ok, result.error
    assert result.details["url"] == f"http://[::1]:{port}/"


async def test_https_reports_certificate_days_left(server: StartServer, cert_10_days: Cert) -> None:
    """A 10-day self-signed cert, no verification: days left ≈ 10, and a TLS phase is timed."""
    port = await server(ssl_context=cert_10_days.server_context())
    result = await get("127.0.0.1", scheme="https", port=port, tls_verify=False, cert_min_days=5)
    assert result.ok, result.error
    assert_phases(result, TLS_PHASES)
    tls = result.phases[2].seconds
    assert tls is not None and tls > 0
    days = result.details["cert_days_left"]
    assert isinstance(days, float) and 9.9 <= days <= 10.01
    assert result.details["url"] == f"https://127.0.0.1:{port}/"


async def test_https_certificate_too_close_to_expiry(
    server: StartServer, cert_10_days: Cert
) -> None:
    """cert_min_days 14 against a 10-day cert fails, saying how many days are left."""
    port = await server(ssl_context=cert_10_days.server_context())
    result = await get("127.0.0.1", scheme="https", port=port, tls_verify=False, cert_min_days=14)
    assert not result.ok
    assert result.error is not None
    assert result.error.startswith("certificate expires in 9.9 days") or result.error.startswith(
        "certificate expires in 10.0 days"
    )
    assert result.error.endswith("(minimum 14)")
    assert result.details["status"] == 200


async def test_https_verification_fails_on_self_signed(
    server: StartServer, cert_10_days: Cert
) -> None:
    """tls_verify=True against a self-signed cert fails in the tls phase, naming verification."""
    port = await server(ssl_context=cert_10_days.server_context())
    result = await get("127.0.0.1", scheme="https", port=port, tls_verify=True)
    assert not result.ok
    assert result.error == "certificate verification failed: self-signed certificate"
    assert [(p.name, p.ok) for p in result.phases] == [
        ("resolve", True),
        ("connect", True),
        ("tls", False),
    ]


async def test_https_empty_response_still_checks_certificate(
    server: StartServer, cert_2080: Cert
) -> None:
    """A 204 with no body over TLS: the certificate is still read (about 20,000 days left)."""
    port = await server(ssl_context=cert_2080.server_context())
    result = await get("127.0.0.1", scheme="https", port=port, path="/empty", tls_verify=False)
    assert result.ok, result.error
    days = result.details["cert_days_left"]
    assert isinstance(days, float) and 19_999 <= days <= 20_000.01


@pytest.mark.parametrize("fixture", ["cert_10_days", "cert_2080"])
def test_not_after_matches_openssl(fixture: str, request: pytest.FixtureRequest) -> None:
    """The DER walk reads the same notAfter as openssl (UTCTime and GeneralizedTime)."""
    cert: Cert = request.getfixturevalue(fixture)
    assert http.certificate_not_after(cert.der()).timestamp() == cert.openssl_not_after()


@pytest.mark.parametrize("der", [b"", b"\x30", b"\x30\x03\x02\x01\x01", b"\x04\x00", b"\x30\x85"])
def test_not_after_rejects_malformed(der: bytes) -> None:
    """Truncated or non-certificate DER raises ValueError."""
    with pytest.raises(ValueError):
        http.certificate_not_after(der)


@pytest.mark.parametrize(
    ("host", "settings", "url"),
    [
        ("10.0.0.1", {}, "http://10.0.0.1:80/"),
        ("10.0.0.1", {"scheme": "https"}, "https://10.0.0.1:443/"),
        (
            "point.example",
            {"port": 8080, "path": "/status?x=1"},
            "http://point.example:8080/status?x=1",
        ),
        ("2001:db8::1", {"scheme": "https", "port": 8443}, "https://[2001:db8::1]:8443/"),
    ],
)
def test_build_url(host: str, settings: dict[str, object], url: str) -> None:
    """Default ports by scheme, explicit ports and paths kept, IPv6 in brackets."""
    assert http.build_url(host, HttpSettings.model_validate(settings)) == url


async def test_cancel_propagates(server: StartServer) -> None:
    """Cancelling a probe mid-request raises CancelledError and leaves nothing open."""
    port = await server()
    async with ProbeContext() as ctx:
        task = asyncio.create_task(
            http.probe("127.0.0.1", HttpSettings(port=port, path="/slow"), ctx)
        )
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        after = await http.probe("127.0.0.1", HttpSettings(port=port), ctx)
    assert after.ok, after.error


async def test_tls_without_handshake_hook_still_reports(
    server: StartServer, cert_10_days: Cert, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the handshake hook (plain SSLContext) TLS is timed within connect.

    The certificate then comes from the transport, which aiohttp still holds only
    while the body is being read: hence the large body here.
    """
    plain = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    plain.check_hostname = False
    plain.verify_mode = ssl.CERT_NONE
    monkeypatch.setitem(http._contexts, False, plain)
    port = await server(ssl_context=cert_10_days.server_context())
    result = await get(
        "127.0.0.1", scheme="https", port=port, path="/big", tls_verify=False, cert_min_days=5
    )
    assert result.ok, result.error
    assert [p.name for p in result.phases] == TLS_PHASES
    assert result.phases[2].detail == "included in connect"
    days = result.details["cert_days_left"]  # read from the transport instead
    assert isinstance(days, float) and 9.9 <= days <= 10.01
