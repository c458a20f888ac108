"""The Prometheus rules of configs/prometheus/: promtool-clean, and unit-tested by promtool
for every alert, firing and not firing.

What the rules do against a real Prometheus scraping ``confmon run`` is checked in
``tests/test_dashboards_e2e.py``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.helpers import ROOT, require_binary

RULES = ROOT / "configs" / "prometheus" / "rules" / "confmon.rules.yml"
RULE_TESTS = ROOT / "configs" / "prometheus" / "tests" / "confmon.rules.test.yml"
SCRAPE_EXAMPLE = ROOT / "configs" / "prometheus" / "prometheus.yml"


def promtool(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_binary("promtool"), *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def alerts() -> list[str]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [r["alert"] for g in data["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_check_rules_is_clean() -> None:
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_unit_tests_pass() -> None:
    """`promtool test rules`: each test in the file says the scenario it plays."""
    done = promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    """For each alert of the rules file, the unit tests expect it to fire somewhere and to
    stay silent somewhere else (a rule that always fires or never fires fails one of them)."""
    data = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    fires: set[str] = set()
    silent: set[str] = set()
    for test in data["tests"]:
        for case in test.get("alert_rule_test", []):
            (fires if case["exp_alerts"] else silent).add(case["alertname"])
    names = set(alerts())
    assert len(names) >= 8
    assert names - fires == set(), "never tested firing"
    assert names - silent == set(), "never tested silent"


def test_a_broken_rule_fails_its_unit_test(tmp_path: Path) -> None:
    """The unit tests can fail: without its `unless`, ConfmonPointDown also fires for the cut
    district's headquarters (two alerts for one outage), and the "one alert" test says so."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    text = RULES.read_text(encoding="utf-8")
    cut = "unless on (job, instance, district) confmon:district_outage:points"
    assert cut in text
    (tmp_path / "rules" / RULES.name).write_text(text.replace(cut, ""), encoding="utf-8")
    (tmp_path / "tests" / RULE_TESTS.name).write_text(
        RULE_TESTS.read_text(encoding="utf-8"), encoding="utf-8"
    )
    done = promtool("test", "rules", RULE_TESTS.name, cwd=tmp_path / "tests")
    assert done.returncode != 0
    assert "a district outage is one alert, not 30" in done.stdout + done.stderr
    assert 'point="ba-vi"' in done.stdout + done.stderr


def test_the_scrape_example_is_a_valid_prometheus_config(tmp_path: Path) -> None:
    """configs/prometheus/prometheus.yml passes `promtool check config` with the rules in place,
    and scrapes confmon as job `confmon`, the job the rules name."""
    data = yaml.safe_load(SCRAPE_EXAMPLE.read_text(encoding="utf-8"))
    assert [j["job_name"] for j in data["scrape_configs"]] == ["confmon"]
    assert 'job="confmon"' in RULES.read_text(encoding="utf-8")
    data["rule_files"] = [str(RULES)]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    done = promtool("check", "config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
