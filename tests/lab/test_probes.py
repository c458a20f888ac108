"""The monitor's own probes against the lab: what an operator sees when training on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from monitor.inventory.model import MediaSettings, SipSettings
from monitor.lab import Impairment, Lab
from monitor.probes import media, sip
from monitor.probes.base import ProbeContext


@pytest.fixture
async def ctx() -> AsyncIterator[ProbeContext]:
    """A probe context, closed after the test."""
    async with ProbeContext() as context:
        yield context


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_sip_probe_sees_the_lab_alive(
    lab: Lab, ports: dict[str, int], ctx: ProbeContext, transport: str
) -> None:
    """The SIP probe gets 200 from the lab's server over UDP and TCP, with no strays."""
    settings = SipSettings(transport=transport, port=ports["sip"])
    result = await sip.probe("127.20.0.1", settings, ctx)
    assert result.ok, result.error
    assert result.details["status"] == 200
    assert str(result.details["server"]).startswith("confmon-lab/")
    assert result.details["strays"] == 0


async def test_sip_probe_sees_503_and_down(
    lab: Lab, ports: dict[str, int], ctx: ProbeContext
) -> None:
    """A sip_status 503 override reaches the probe as 503; a down point is a failed probe."""
    lab.set_impairment("hq", Impairment(sip_status=503))
    result = await sip.probe("127.20.0.1", SipSettings(port=ports["sip"]), ctx)
    assert result.details["status"] == 503
    lab.set_impairment("hq", Impairment(down=True))
    result = await sip.probe("127.20.0.1", SipSettings(port=ports["sip"], timeout=0.4), ctx)
    assert not result.ok and result.error


async def test_media_probe_measures_injected_delay_jitter_and_loss(
    lab: Lab, ports: dict[str, int], ctx: ProbeContext
) -> None:
    """40 ms ± 10 ms jitter and 5 % loss injected are what the media probe measures back.

    300 packets: the loss estimate has a standard deviation of 1.3 points, the mean
    of the uniform jitter 0.3 ms; RFC 3550 jitter of uniform ±10 ms reads about
    6.7 ms (the mean absolute difference of two draws is 2/3 of the spread).
    """
    lab.set_impairment("hq", Impairment(delay=0.040, jitter=0.010, loss=0.05))
    settings = MediaSettings(port=ports["media"], packets=300, pacing=0.010, timeout=1.0)
    result = await media.probe("127.20.0.1", settings, ctx)
    assert result.ok, result.error
    assert result.loss is not None and 0.01 <= result.loss <= 0.10
    assert result.rtt is not None and 0.0385 <= result.rtt <= 0.040 + 0.030
    assert result.rtt_min is not None and result.rtt_min >= 0.0299
    assert result.jitter is not None and 0.004 <= result.jitter <= 0.015
    assert result.mos is not None and result.mos < 4.3  # loss and delay cost voice quality
