"""The alerts: section as users write it: the documented example is valid, mistakes are one
line with file and field, secrets are read at start; and ``confmon alerts test``."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.alerts.config import resolve_secret
from monitor.errors import ConfigError, ConfmonError
from monitor.inventory import load_inventory, parse_inventory
from monitor.inventory.writer import to_yaml
from tests.alerts.receiver import Receiver as Hook
from tests.helpers import ROOT, free_port

POINTS = """
points:
  - id: ba-vi
    name: Huyện Ba Vì
    host: 127.88.0.1
    profile: room
    points:
      - {id: ba-vi.phu-cuong, name: Xã Phú Cường, host: 127.88.0.2}
  - {id: son-tay, name: Thị xã Sơn Tây, host: 127.88.0.3, profile: room}
profiles:
  room: {sip: {}}
"""


def _doc_example(doc: str = "docs/alerts.md") -> str:
    text = (ROOT / doc).read_text(encoding="utf-8")
    match = re.search(r"```yaml\n(alerts:.*?)```", text, re.S)
    assert match, f"{doc} has its example alerts: section"
    return match.group(1)


def test_the_readmes_example_is_a_valid_section() -> None:
    inv = parse_inventory(_doc_example("README.md") + POINTS)
    assert [r.format for r in inv.alerts.receivers] == ["zalo", "telegram", "slack"]


def test_the_documented_example_is_a_valid_section() -> None:
    inv = parse_inventory(_doc_example() + POINTS)
    names = [r.name for r in inv.alerts.receivers]
    assert names == ["noc", "zalo-ban-chi-dao", "telegram-it", "slack", "alertmanager"]
    zalo = inv.alerts.receivers[1]
    assert zalo.states == ["down", "unreachable"] and zalo.chat_id == "1234567890abcdef"
    assert inv.alerts.storm.changes == 100 and inv.alerts.storm.window == 60.0


def test_the_section_survives_writing_the_inventory_back() -> None:
    inv = parse_inventory(_doc_example() + POINTS)
    again = parse_inventory(to_yaml(inv))
    assert again.alerts == inv.alerts


@pytest.mark.parametrize(
    ("section", "said"),
    [
        ("alerts: {receivers: [{name: a, url: 'ftp://x', secret_env: S}]}", "http"),
        ("alerts: {receivers: [{name: a, url: 'http://x'}]}", "signed"),
        (
            "alerts: {receivers: [{name: a, url: 'http://x', format: telegram, secret_env: S}]}",
            "chat_id",
        ),
        (
            "alerts: {receivers: [{name: a, url: 'http://x/bot{secret}', format: slack}]}",
            "{secret}",
        ),
        (
            "alerts: {receivers: [{name: a, url: 'http://x', secret_env: S, states: [up]}]}",
            "states",
        ),
        (
            "alerts: {receivers: [{name: a, url: 'http://x', secret_env: S, states: [dwn]}]}",
            "states",
        ),
        (
            "alerts: {receivers: [{name: a, url: 'http://x', secret_env: S, districts: [nowhere]}]}",
            "nowhere",
        ),
        (
            "alerts: {receivers: [{name: a, url: 'http://x', secret_env: S, districts: [ba-vi.phu-cuong]}]}",
            "not a district",
        ),
        (
            "alerts: {receivers: [{name: a, url: 'http://x', format: slack, headers: {Host: y}}]}",
            "Host",
        ),
        (
            "alerts: {receivers: [{name: a, url: 'http://x', format: slack}, {name: a, url: 'http://y', format: slack}]}",
            "two receivers",
        ),
        ("alerts: {repeat_interval: 10s}", "repeat_interval"),
        ("alerts: {group_by: [district, level]}", "group"),
        (
            "alerts: {receivers: [{name: a, url: 'http://x', secret_env: S, secret_file: /f}]}",
            "not both",
        ),
        ("alerts: {recievers: []}", "recievers"),
    ],
)
def test_a_mistake_is_one_line_naming_the_field(section: str, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_inventory(section + "\n" + POINTS)
    text = str(caught.value)
    assert said in text, text
    assert "alerts" in text
    assert "Traceback" not in text


def test_secrets_are_read_at_start_and_a_missing_one_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv = parse_inventory(_doc_example() + POINTS)
    noc, zalo, _, slack, _ = inv.alerts.receivers
    monkeypatch.delenv("CONFMON_NOC_SECRET", raising=False)
    with pytest.raises(ConfmonError, match=r"CONFMON_NOC_SECRET.*not set"):
        resolve_secret(noc)
    monkeypatch.setenv("CONFMON_NOC_SECRET", "  k3y \n")
    assert resolve_secret(noc) == "k3y"
    with pytest.raises(ConfmonError, match="cannot read secret_file /etc/confmon/zalo-token"):
        resolve_secret(zalo)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "not a url")
    with pytest.raises(ConfmonError, match="SLACK_WEBHOOK_URL is not an http"):
        resolve_secret(slack)
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.example/services/T/B/x")
    assert resolve_secret(slack) == "https://hooks.slack.example/services/T/B/x"


def _confmon(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


async def test_alerts_test_sends_a_marked_message_and_reports_the_answer(tmp_path: Path) -> None:
    async with Hook() as ok_hook, Hook(default=403) as refusing:
        config = tmp_path / "inv.yaml"
        config.write_text(
            "alerts:\n  receivers:\n"
            f"    - {{name: noc, url: '{ok_hook.url}', secret_env: NOC}}\n"
            f"    - {{name: tg, url: '{refusing.url}/bot{{secret}}/sendMessage', format: telegram,"
            " chat_id: 42, secret_env: NOC}\n" + POINTS,
            encoding="utf-8",
        )
        env = {"NOC": "s3cret"}
        one = await asyncio.to_thread(
            _confmon, "alerts", "test", "-c", str(config), "--receiver", "noc", env=env
        )
        assert one.returncode == 0, one.stderr
        assert one.stdout.strip() == "noc (confmon): ok: HTTP 200"
        (got,) = ok_hook.arrivals
        body = got.json()
        assert body["kind"] == "test" and "X-Confmon-Signature" in got.headers

        both = await asyncio.to_thread(_confmon, "alerts", "test", "-c", str(config), env=env)
        assert both.returncode == 1
        assert "tg (telegram): FAILED: HTTP 403" in both.stdout
        (refused,) = refusing.arrivals
        assert refused.path == "/hook/bots3cret/sendMessage"
        assert "TIN NHẮN THỬ" in refused.json()["text"]

        unknown = await asyncio.to_thread(
            _confmon, "alerts", "test", "-c", str(config), "--receiver", "nope", env=env
        )
        assert unknown.returncode == 2
        assert unknown.stderr.strip().splitlines() == [
            f"confmon: --receiver 'nope': not a receiver of {config} (configured: noc, tg)"
        ]
        missing = await asyncio.to_thread(_confmon, "alerts", "test", "-c", str(config))
        assert missing.returncode == 2, missing.stderr
        assert "NOC (secret_env) is not set" in missing.stderr
        assert "Traceback" not in missing.stderr


def test_a_missing_secret_stops_run_at_start_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "inv.yaml"
    config.write_text(
        "alerts: {receivers: [{name: noc, url: 'http://127.0.0.1:9/x', secret_env: NOC_UNSET}]}\n"
        + POINTS,
        encoding="utf-8",
    )
    load_inventory(config)  # the file itself is fine: check-config passes without secrets
    env = {k: v for k, v in os.environ.items() if k != "NOC_UNSET"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "monitor",
            "run",
            "-c",
            str(config),
            "--no-icmp",
            "--listen",
            f"127.0.0.1:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("confmon: alerts: receiver noc: the environment variable NOC_UNSET")
    assert "Traceback" not in done.stderr


def test_a_level_no_point_has_is_refused_with_a_hint() -> None:
    section = "alerts: {receivers: [{name: a, url: 'http://x', format: slack, levels: [comune]}]}"
    with pytest.raises(ConfigError) as caught:
        parse_inventory(section + "\n" + POINTS)
    text = str(caught.value)
    assert "'comune' is not the level of any point" in text and "commune" in text, text


@pytest.mark.parametrize(
    "url",
    ["http://no host/x", "http://x:port/", "javascript:alert(1)", "http://x/a{secrets}"],
)
def test_urls_that_cannot_work_are_refused_at_parse(url: str) -> None:
    section = f"alerts: {{receivers: [{{name: a, url: '{url}', format: slack}}]}}"
    with pytest.raises(ConfigError):
        parse_inventory(section + "\n" + POINTS)


def test_zero_durations_turn_things_off() -> None:
    inv = parse_inventory("alerts: {group_wait: 0s, repeat_interval: 0s}\n" + POINTS)
    assert inv.alerts.group_wait == 0.0 and inv.alerts.repeat_interval == 0.0


def test_a_fifo_as_secret_file_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    inv = parse_inventory(
        "alerts: {receivers: [{name: tg, url: 'https://api.telegram.org/bot{secret}/sendMessage',"
        f" format: telegram, chat_id: 1, secret_file: '{fifo}'}}]}}\n" + POINTS
    )
    with pytest.raises(ConfmonError, match="not a regular file"):
        resolve_secret(inv.alerts.receivers[0])


def test_a_token_that_cannot_go_into_the_url_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    inv = parse_inventory(
        "alerts: {receivers: [{name: tg, url: 'https://api.telegram.org/bot{secret}/sendMessage',"
        " format: telegram, chat_id: 1, secret_env: TG}]}\n" + POINTS
    )
    monkeypatch.setenv("TG", "abc def/../x?y")
    with pytest.raises(ConfmonError, match="cannot go into its url"):
        resolve_secret(inv.alerts.receivers[0])
    monkeypatch.setenv("TG", "123456:AAH-x_y")
    assert resolve_secret(inv.alerts.receivers[0]) == "123456:AAH-x_y"
