"""Real packet loss, judged over the quality window: kernel ICMP to hosts in a network
namespace of our own, with nftables dropping echo requests at random (the kernel has no
netem). 0.5 % loss changes nothing, 10 % makes a point degraded and keeps it so, 100 %
makes it down."""

from __future__ import annotations

import json

from tests.helpers import require_binary, run_in_empty_netns

SCRIPT = r"""
import asyncio, json, subprocess
import msgspec

from monitor.core.health import HealthModel
from monitor.inventory import parse_inventory
from monitor.probes import icmp

RULES = '''
table inet loss {
  chain in {
    # on the way in, as the network would lose them (dropped on the way out, the
    # kernel would refuse the send instead: EPERM)
    type filter hook input priority 0;
    ip daddr 127.0.0.2 icmp type echo-request numgen random mod 1000 < 5 drop
    ip daddr 127.0.0.3 icmp type echo-request numgen random mod 1000 < 100 drop
    ip daddr 127.0.0.4 icmp type echo-request drop
  }
}
'''
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["nft", "-f", "-"], input=RULES, text=True, check=True)

CONFIG = '''
monitor: {interval: 5s, fail_after: 2, recover_after: 2, stale_after: 20s, quality_window: 60s}
thresholds: {loss: 2%}
profiles: {room: {icmp: {count: 20, spacing: 5ms, timeout: 150ms}}}
points:
  - {id: clean, name: Clean, host: 127.0.0.1, profile: room}
  - {id: half-percent, name: Half, host: 127.0.0.2, profile: room}
  - {id: ten-percent, name: Ten, host: 127.0.0.3, profile: room}
  - {id: dead, name: Dead, host: 127.0.0.4, profile: room}
'''
T0 = 1_800_000_000.0
CYCLES = 60  # five minutes at the 5 s interval, on a virtual clock: the model reads only `at`


async def main():
    inv = parse_inventory(CONFIG)
    model = HealthModel(inv, now=T0)
    settings = inv.profiles["room"].icmp
    changes = {pid: [] for pid in inv.points}
    sent = {pid: 0 for pid in inv.points}
    lost = {pid: 0 for pid in inv.points}
    async with icmp.ProbeContext() as ctx:
        for k in range(CYCLES):
            at = T0 + 5 * k
            results = await asyncio.gather(
                *(icmp.probe(p.host, settings, ctx) for p in inv.points.values())
            )
            for pid, r in zip(inv.points, results):
                sent[pid] += r.details["sent"]
                lost[pid] += r.details["sent"] - r.details["received"]
                for e in model.ingest(pid, [msgspec.structs.replace(r, at=at)], at):
                    changes[pid].append([k * 5, e.state.value, e.reason])
    print(json.dumps({"changes": changes, "sent": sent, "lost": lost}))


asyncio.run(main())
"""


def test_real_loss_is_judged_over_the_window() -> None:
    """0.5 % loss: no state change over 60 cycles; 10 %: degraded within one window and
    no flapping; 100 %: down after fail_after cycles; no loss: up."""
    require_binary("nft")
    require_binary("ip")
    out = json.loads(run_in_empty_netns(SCRIPT, timeout=120)[-1])
    changes, sent, lost = out["changes"], out["sent"], out["lost"]
    assert sent["half-percent"] >= 1180 and lost["clean"] == 0
    assert 70 <= lost["ten-percent"] <= 180, lost  # the rule really drops about 10 %
    assert [c[1] for c in changes["clean"]] == ["up"]
    assert [c[1] for c in changes["half-percent"]] == ["up"], (changes["half-percent"], lost)
    ten = changes["ten-percent"]
    assert [c[1] for c in ten] == ["up", "degraded"], (ten, lost)
    # within one quality window (60 s) of the first cycle, on the virtual clock; with 240
    # echoes a minute the 99 % bound is past 2 % by then but for about 1 run in 1,000
    assert ten[1][0] <= 60, ten
    assert "loss" in ten[1][2]
    assert [c[1] for c in changes["dead"]] == ["down"] and changes["dead"][0][0] == 5
