"""The probing thread's event loop: uvloop where installed, asyncio's on request; every
probe kind works on both, against the lab."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from monitor.core.results import ResultBatch
from monitor.errors import ConfmonError
from monitor.inventory.synthetic import synthetic_inventory
from monitor.lab import Lab
from monitor.loops import LOOP_ENV, loop_name, new_event_loop
from monitor.transport.local import LocalTransport

PROFILE = {
    "icmp": {"count": 3, "spacing": "20ms", "timeout": "1s"},
    "sip": {"transport": "udp", "port": 5060, "timeout": "1s"},
    "tcp": {"port": 5060, "timeout": "1s"},
    "http": {"port": 8080, "path": "/", "timeout": "2s"},
    "media": {"port": 7078, "packets": 10, "pacing": "20ms", "every": "1s"},
}


def test_uvloop_by_default_and_asyncio_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop")
    monkeypatch.delenv(LOOP_ENV, raising=False)
    for wanted, name in (("", "uvloop"), ("asyncio", "asyncio"), ("uvloop", "uvloop")):
        monkeypatch.setenv(LOOP_ENV, wanted)
        loop = new_event_loop()
        try:
            assert loop_name(loop) == name
        finally:
            loop.close()


def test_asking_for_uvloop_without_it_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed
    monkeypatch.setenv(LOOP_ENV, "uvloop")
    with pytest.raises(ConfmonError, match="uvloop is not installed"):
        new_event_loop()
    monkeypatch.setenv(LOOP_ENV, "")
    loop = new_event_loop()  # the fallback
    assert loop_name(loop) == "asyncio"
    loop.close()


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
async def test_every_probe_kind_answers_on_the_probing_loop(
    loop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """icmp, sip/udp, tcp, http and media from a LocalTransport (the probing thread of
    `confmon run`) against the lab: every probe of every point succeeds."""
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    monkeypatch.setenv(LOOP_ENV, loop)
    inv = synthetic_inventory(
        6, districts=2, profile=PROFILE, first_host="127.73.0.1", monitor={"interval": "1s"}
    )
    wanted = {(p, k) for p in inv.points for k in PROFILE}
    seen: set[tuple[str, str]] = set()
    everything = asyncio.Event()

    def deliver(batch: ResultBatch, received_at: float) -> object:
        seen.update((point, r.probe) for point, r in batch.results if r.ok)
        if wanted <= seen:
            everything.set()
        return None

    async with Lab(inv, seed=1):
        transport = LocalTransport(inv, deliver)
        await transport.start()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(everything.wait(), 60)
        finally:
            await transport.stop()
    assert not sorted(wanted - seen), sorted(wanted - seen)
