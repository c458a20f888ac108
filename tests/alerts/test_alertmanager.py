"""confmon's two Alertmanager formats against a real Alertmanager (:mod:`tests.alertmanager`).

One ``confmon run`` on the 450 Hanoi lab points (module-scoped: it is the slow part, and
every test below reads what it recorded) with two receivers:

* ``am``, format ``alertmanager-api``: POSTs to the Alertmanager's ``/api/v2/alerts``, as
  Prometheus does. The Alertmanager (``group_by: [district]``) sends its own webhook to
  the recording receiver ``from_am``.
* ``hook``, format ``alertmanager``: the webhook v4 payload, to the receiver
  ``from_confmon``.

The story: all points up; cut ``ba-vi`` (the HQ down, its 29 communes unreachable) and
the commune ``son-tay.kim-son`` (down on its own); once the Alertmanager holds those, cut
``son-tay`` (kim-son goes from down to unreachable behind it); once the Alertmanager holds
son-tay's, clear every cut and wait until the Alertmanager no longer lists ba-vi's alerts.

What Alertmanager 0.25 does with a resolved alert (api/v2/api.go, ``alertFilter``, and
checked here): an alert whose ``endsAt`` has passed is left out of ``GET /api/v2/alerts``
and ``/api/v2/alerts/groups`` whatever the ``active``/``silenced``/``inhibited``/
``unprocessed`` filters say (there is no "resolved" filter); it stays in memory until the
GC (``--alerts.gc-interval``, 30 min) and its group sends one last webhook with
``status: resolved``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from monitor.alerts.config import AlertsSettings
from monitor.inventory import Point
from monitor.lab.impairment import Impairment
from tests.alertmanager import RECEIVER, Alertmanager
from tests.alerts.receiver import Arrival, Receiver
from tests.commands.running import Running, hanoi_lab, running, until

pytestmark = pytest.mark.asyncio(loop_scope="module")

#: lab addresses no other test uses (grep tests/ for hanoi_lab("127.)
BASE = "127.84.0.1"
INTERVAL = 1.0
DISTRICT = "ba-vi"
COMMUNES = 29
KIM_SON = "son-tay.kim-son"
GROUP_KEY = '{}:{district="ba-vi"}'
ZERO_TIME = "0001-01-01T00:00:00Z"
#: every wait is bounded, generously: the machine may be a loaded 2-core VM
WAIT = 40.0


def when(text: str) -> datetime:
    """An RFC 3339 time as Alertmanager or confmon writes it (Go: up to nanoseconds)."""
    head, dot, frac = text.removesuffix("Z").partition(".")
    micro = f".{frac[:6]:0<6}" if dot else ""
    return datetime.fromisoformat(f"{head}{micro}+00:00")


def in_district(alerts: list[dict[str, Any]], district: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["labels"].get("district") == district]


def by_point(alerts: list[dict[str, Any]]) -> dict[str, str]:
    """point -> alertname (a point twice would be lost here: see the tests counting them)."""
    return {a["labels"]["point"]: a["labels"]["alertname"] for a in alerts}


def group_posts(arrivals: list[Arrival], district: str) -> list[dict[str, Any]]:
    """The webhook payloads received for one district's group, in order."""
    out = []
    for a in arrivals:
        doc = a.json()
        if isinstance(doc, dict) and doc.get("groupLabels") == {"district": district}:
            out.append(doc)
    return out


def complete_firing(docs: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    return [
        d
        for d in docs
        if d["status"] == "firing"
        and len(d["alerts"]) == n
        and all(a["status"] == "firing" for a in d["alerts"])
    ]


@dataclasses.dataclass
class Story:
    """What the module's one run recorded (see the module docstring)."""

    points: dict[str, Point]
    #: ``GET /api/v2/alerts`` when ba-vi's 30 alerts and kim-son's were all held
    held: list[dict[str, Any]]
    held_at: datetime
    #: the same once son-tay's cut was held too
    son_tay_held: list[dict[str, Any]]
    #: how many webhooks the Alertmanager had sent when the cuts were cleared
    from_am_before_clear: int
    #: ``GET /api/v2/alerts`` (default filters, then every filter on) once ba-vi's left
    after_clear: list[dict[str, Any]]
    after_clear_everything: list[dict[str, Any]]
    after_clear_groups: list[dict[str, Any]]
    cleared_at: datetime
    from_am: list[Arrival]
    from_confmon: list[Arrival]
    #: confmon's ``/api/v1/notifications`` at the end
    notifications: dict[str, Any]


async def am_get(session: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
        resp.raise_for_status()
        body = await resp.json()
    assert isinstance(body, list), body
    return body


async def diagnose(run: Running, am: Alertmanager) -> str:
    """What confmon says it sent (for a failed wait)."""
    try:
        sent = await run.get("/api/v1/notifications?limit=10")
    except (aiohttp.ClientError, OSError, AssertionError) as exc:
        sent = f"(no answer: {exc})"
    return f"confmon's notifications: {sent}; alertmanager log: {am.log}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def story(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Story]:
    tmp = tmp_path_factory.mktemp("alertmanager")
    lab_inv = hanoi_lab(BASE, interval=INTERVAL, stale_after=10.0)
    async with (
        Receiver() as from_am,
        Receiver() as from_confmon,
        # the Alertmanager formats hear of every alert: a commune judged a cycle after its
        # headquarters went down is posted then, and gathering those few seconds into one
        # webhook is what Alertmanager's own group_wait is for
        Alertmanager(tmp / "am", from_am.url, group_wait="5s") as am,
    ):
        inv = dataclasses.replace(
            lab_inv,
            alerts=AlertsSettings.model_validate(
                {
                    "group_wait": "1s",
                    "storm": {"changes": 10_000},  # not what is tested here
                    "receivers": [
                        {
                            "name": "am",
                            "url": f"{am.url}/api/v2/alerts",
                            "format": "alertmanager-api",
                        },
                        {"name": "hook", "url": from_confmon.url, "format": "alertmanager"},
                    ],
                }
            ),
        )
        async with running(tmp, inv) as (run, lab):
            assert lab is not None
            session = run.session

            async def wait(check: Callable[[], Awaitable[bool]], what: str) -> None:
                try:
                    await until(check, WAIT, what)
                except AssertionError as exc:
                    raise AssertionError(f"{exc}; {await diagnose(run, am)}") from None

            await run.wait_all_up(len(inv.points), within=60)

            lab.set_impairment(DISTRICT, Impairment(down=True))
            lab.set_impairment(KIM_SON, Impairment(down=True))
            expected = {DISTRICT: "ConfmonPointDown"} | {
                p.id: "ConfmonPointUnreachable" for p in inv.descendants(DISTRICT)
            }
            assert len(expected) == COMMUNES + 1
            held: list[dict[str, Any]] = []

            async def all_held() -> bool:
                nonlocal held
                held = await am.alerts(session)
                mine = by_point(in_district(held, DISTRICT))
                kim_son = {
                    a["labels"]["alertname"] for a in held if a["labels"]["point"] == KIM_SON
                }
                return expected.items() <= mine.items() and "ConfmonPointDown" in kim_son

            await wait(all_held, "ba-vi's 30 alerts and kim-son's held by Alertmanager")
            held_at = datetime.now(UTC)

            lab.set_impairment("son-tay", Impairment(down=True))
            son_tay = {"son-tay": "ConfmonPointDown"} | {
                p.id: "ConfmonPointUnreachable" for p in inv.descendants("son-tay")
            }
            son_tay_held: list[dict[str, Any]] = []

            async def son_tay_in() -> bool:
                nonlocal son_tay_held
                son_tay_held = await am.alerts(session)
                got = {
                    (a["labels"]["point"], a["labels"]["alertname"])
                    for a in in_district(son_tay_held, "son-tay")
                }
                return set(son_tay.items()) <= got

            await wait(son_tay_in, "son-tay's alerts held by Alertmanager")
            # Alertmanager's webhook for ba-vi: sent once its group_wait passed
            await wait(
                lambda: _true(group_posts(from_am.delivered, DISTRICT)),
                "Alertmanager's webhook for ba-vi",
            )
            await wait(
                lambda: _true(
                    complete_firing(group_posts(from_confmon.delivered, DISTRICT), COMMUNES + 1)
                ),
                "confmon's alertmanager-format webhook for ba-vi's 30 alerts",
            )
            from_am_before_clear = len(group_posts(from_am.delivered, DISTRICT))

            for point in (DISTRICT, KIM_SON, "son-tay"):
                lab.clear(point)

            async def ba_vi_gone() -> bool:
                return not in_district(await am.alerts(session), DISTRICT)

            await wait(ba_vi_gone, "ba-vi's alerts resolved in Alertmanager")
            cleared_at = datetime.now(UTC)
            after_clear = await am.alerts(session)
            everything = await am_get(
                session,
                f"{am.url}/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true",
            )
            groups = await am_get(session, f"{am.url}/api/v2/alerts/groups")

            def resolved(arrivals: list[Arrival]) -> bool:
                return any(d["status"] == "resolved" for d in group_posts(arrivals, DISTRICT))

            await wait(
                lambda: _true(resolved(from_am.delivered)), "Alertmanager's resolved webhook"
            )
            await wait(
                lambda: _true(resolved(from_confmon.delivered)), "confmon's resolved webhook"
            )
            notifications = await run.get("/api/v1/notifications?limit=200")
            points = {p.id: p for p in inv.points.values()}
        yield Story(
            points=points,
            held=held,
            held_at=held_at,
            son_tay_held=son_tay_held,
            from_am_before_clear=from_am_before_clear,
            after_clear=after_clear,
            after_clear_everything=everything,
            after_clear_groups=groups,
            cleared_at=cleared_at,
            from_am=list(from_am.delivered),
            from_confmon=list(from_confmon.delivered),
            notifications=notifications,
        )


async def _true(value: object) -> bool:
    return bool(value)


# --- alertmanager-api: what the Alertmanager holds ------------------------------------------


async def test_alertmanager_holds_the_cut_district(story: Story) -> None:
    """ba-vi down and its 29 communes unreachable: 30 active alerts in the Alertmanager, with
    confmon's labels, the Vietnamese summary and an endsAt minutes ahead (re-sent every 60 s)."""
    ba_vi = in_district(story.held, DISTRICT)
    assert len(ba_vi) == COMMUNES + 1, [a["labels"] for a in ba_vi]
    names = by_point(ba_vi)
    assert names.pop(DISTRICT) == "ConfmonPointDown"
    assert set(names.values()) == {"ConfmonPointUnreachable"} and len(names) == COMMUNES
    for a in ba_vi:
        point = story.points[a["labels"]["point"]]
        assert a["labels"] == {
            "alertname": "ConfmonPointDown" if point.id == DISTRICT else "ConfmonPointUnreachable",
            "point": point.id,
            "district": DISTRICT,
            "level": point.level,
            "severity": "critical",
        }
        summary = a["annotations"]["summary"]
        assert "Huyện Ba Vì" in summary and point.name in summary, summary
        want = "mất kết nối" if point.id == DISTRICT else "không truy cập được"
        assert summary.endswith(want), summary
        assert a["annotations"]["name"] == point.name
        assert a["status"] == {"state": "active", "silencedBy": [], "inhibitedBy": []}
        assert [r["name"] for r in a["receivers"]] == [RECEIVER]
        assert when(a["startsAt"]) <= story.held_at
        # Prometheus-like: 4 × the 60 s resend ahead, so a missed resend does not resolve it
        ends = when(a["endsAt"])
        assert story.held_at + timedelta(seconds=60) < ends <= story.held_at + timedelta(minutes=5)
    assert {a["labels"]["level"] for a in ba_vi} == {"district", "commune"}


async def test_confmon_posts_are_accepted(story: Story) -> None:
    """Every POST to /api/v2/alerts was answered 200 (a 400 would mean a payload the
    Alertmanager's OpenAPI validation refuses)."""
    am = [n for n in story.notifications["notifications"] if n["receiver"] == "am"]
    assert am, story.notifications
    assert {(n["status"], n["last_result"]) for n in am} == {("delivered", "HTTP 200")}, am
    (status,) = [r for r in story.notifications["receivers"] if r["name"] == "am"]
    assert status["failed"] == 0 and status["last_error"] is None, status


async def test_resolved_alerts_leave_the_alertmanager(story: Story) -> None:
    """Clearing the cut resolves ba-vi's alerts: the Alertmanager stops listing them (every
    filter on, and in the groups) and its last webhook for the group says resolved, with
    the startsAt of the firing alert (the resolved POST carries no startsAt: merged)."""
    assert not in_district(story.after_clear, DISTRICT)
    assert not in_district(story.after_clear_everything, DISTRICT)
    assert not [g for g in story.after_clear_groups if g["labels"] == {"district": DISTRICT}]

    docs = group_posts(story.from_am, DISTRICT)
    last = docs[-1]
    assert last["status"] == "resolved", [d["status"] for d in docs]
    # the headquarters and its communes may recover a cycle apart: every alert that was
    # held is resolved by the end, each with the start it had while firing
    started = {
        (a["labels"]["point"], a["labels"]["alertname"]): when(a["startsAt"])
        for a in in_district(story.held, DISTRICT)
    }
    resolved = {
        (a["labels"]["point"], a["labels"]["alertname"]): a
        for d in docs
        for a in d["alerts"]
        if a["status"] == "resolved"
    }
    assert set(started) <= set(resolved), set(started) - set(resolved)
    assert len({p for p, _ in resolved}) == COMMUNES + 1
    for key, begun in started.items():
        a = resolved[key]
        assert when(a["startsAt"]) == begun, key
        assert begun < when(a["endsAt"]) <= story.cleared_at + timedelta(seconds=30)


# --- Alertmanager's grouping of confmon's alerts ------------------------------------------


async def test_alertmanager_sends_one_webhook_for_the_district(story: Story) -> None:
    """Alertmanager grouped the 30 alerts it was sent by district: one webhook (none more
    until the cut was cleared), with all of them."""
    docs = group_posts(story.from_am, DISTRICT)
    assert story.from_am_before_clear == 1, [len(d["alerts"]) for d in docs]
    first = docs[0]
    assert first["status"] == "firing"
    assert first["receiver"] == RECEIVER
    assert first["groupLabels"] == {"district": DISTRICT}
    assert first["groupKey"] == GROUP_KEY
    assert first["commonLabels"] == {"district": DISTRICT, "severity": "critical"}
    assert len(first["alerts"]) == COMMUNES + 1
    assert all(a["status"] == "firing" for a in first["alerts"])
    assert by_point(first["alerts"]) == by_point(in_district(story.held, DISTRICT))


# --- the alertmanager webhook format against Alertmanager's own -------------------------


def shape(doc: dict[str, Any]) -> dict[str, str]:
    return {k: type(v).__name__ for k, v in doc.items()}


async def test_confmon_webhook_matches_alertmanagers(story: Story) -> None:
    """confmon's ``alertmanager`` message for ba-vi and the Alertmanager's own webhook for
    the same alerts: the same keys and value types, the same group, the same alerts."""
    ours = complete_firing(group_posts(story.from_confmon, DISTRICT), COMMUNES + 1)[0]
    theirs = group_posts(story.from_am, DISTRICT)[0]

    assert shape(ours) == shape(theirs)
    assert ours["version"] == theirs["version"] == "4"
    assert ours["status"] == theirs["status"] == "firing"
    assert ours["receiver"] == "hook" and theirs["receiver"] == RECEIVER
    assert ours["groupLabels"] == theirs["groupLabels"] == {"district": DISTRICT}
    assert ours["groupKey"] == theirs["groupKey"] == GROUP_KEY
    assert ours["commonLabels"] == theirs["commonLabels"]
    assert ours["commonAnnotations"] == theirs["commonAnnotations"]
    assert ours["truncatedAlerts"] == theirs["truncatedAlerts"] == 0

    for a in (*ours["alerts"], *theirs["alerts"]):
        assert shape(a) == shape(theirs["alerts"][0])
        assert a["status"] == "firing"
        assert a["endsAt"] == ZERO_TIME  # a firing alert's end is not shown
        assert len(a["fingerprint"]) == 16 and int(a["fingerprint"], 16) >= 0
    mine = {a["labels"]["point"]: a for a in ours["alerts"]}
    seen = {a["labels"]["point"]: a for a in theirs["alerts"]}
    assert mine.keys() == seen.keys()
    assert mine[DISTRICT]["labels"] == seen[DISTRICT]["labels"]
    assert sorted(mine[DISTRICT]["labels"]) == [
        "alertname",
        "district",
        "level",
        "point",
        "severity",
    ]
    for point, a in mine.items():
        assert a["labels"] == seen[point]["labels"]
        assert a["annotations"] == seen[point]["annotations"]
        assert when(a["startsAt"]) == when(seen[point]["startsAt"])


async def test_confmon_resolved_webhook_matches_alertmanagers(story: Story) -> None:
    """The resolved messages too: the same shape, status resolved, endsAt set."""
    ours = [d for d in group_posts(story.from_confmon, DISTRICT) if d["status"] == "resolved"]
    theirs = group_posts(story.from_am, DISTRICT)[-1]
    assert ours and theirs["status"] == "resolved"
    last = ours[-1]
    assert shape(last) == shape(theirs)
    assert last["groupKey"] == theirs["groupKey"] == GROUP_KEY
    for a in (*last["alerts"], *theirs["alerts"]):
        assert shape(a) == shape(theirs["alerts"][0])
        assert a["status"] == "resolved"
        assert a["endsAt"] != ZERO_TIME and when(a["startsAt"]) < when(a["endsAt"])
    points = {a["labels"]["point"] for d in ours for a in d["alerts"]}
    assert points == {a["labels"]["point"] for a in theirs["alerts"]}


async def test_fingerprints_are_stable(story: Story) -> None:
    """A receiver matches a resolved alert to its firing one by fingerprint: each side keeps
    one per point (its label set) from the firing message to the resolved one."""
    held = {a["labels"]["point"]: a["fingerprint"] for a in in_district(story.held, DISTRICT)}
    for docs in (group_posts(story.from_am, DISTRICT), group_posts(story.from_confmon, DISTRICT)):
        prints: dict[str, set[str]] = {}
        for d in docs:
            for a in d["alerts"]:
                prints.setdefault(a["labels"]["point"], set()).add(a["fingerprint"])
        assert all(len(f) == 1 for f in prints.values()), prints
        assert len({next(iter(f)) for f in prints.values()}) == len(prints)  # one per point
    am_prints = {
        a["labels"]["point"]: a["fingerprint"]
        for a in group_posts(story.from_am, DISTRICT)[0]["alerts"]
    }
    assert am_prints == held


async def test_fingerprint_is_alertmanagers(story: Story) -> None:
    """The same labels, the same fingerprint as Alertmanager gives them (its API and UI
    find an alert by it; a receiver fed by both sees one alert)."""
    ours = complete_firing(group_posts(story.from_confmon, DISTRICT), COMMUNES + 1)[0]
    theirs = group_posts(story.from_am, DISTRICT)[0]
    mine = {a["labels"]["point"]: a["fingerprint"] for a in ours["alerts"]}
    seen = {a["labels"]["point"]: a["fingerprint"] for a in theirs["alerts"]}
    assert mine == seen


# --- a point whose state changes while it fires -------------------------------------------


async def test_a_state_change_resolves_the_old_alert(story: Story) -> None:
    """kim-son, down on its own, goes unreachable when son-tay is cut: Prometheus would send
    the old alert (another label set) resolved; the Alertmanager must hold only the new one."""
    kim_son = [
        a["labels"]["alertname"] for a in story.son_tay_held if a["labels"]["point"] == KIM_SON
    ]
    assert kim_son == ["ConfmonPointUnreachable"]
