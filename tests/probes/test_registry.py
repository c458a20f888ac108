"""The probe registry: every spec is consistent, and every derived table follows from the specs."""

from __future__ import annotations

import subprocess
import sys
import types
import typing
from typing import Any

import pytest

from monitor.core import health
from monitor.inventory.model import Profile
from monitor.outputs import metrics
from monitor.probes import registry
from monitor.probes.base import ProbeContext
from monitor.probes.spec import MEASURE_NAMES, ProbeSpec
from tests.helpers import ROOT

SPECS = list(registry.SPECS.values())


def defaults(spec: ProbeSpec[Any]) -> Any:
    """The spec's settings with every default; a required port is given (tcp has no default)."""
    required = {name for name, field in spec.settings.model_fields.items() if field.is_required()}
    assert required <= {"port"}, f"{spec.name}: give the test a value for {required - {'port'}}"
    return spec.settings.model_validate(dict.fromkeys(required, 5060))


def test_canonical_order() -> None:
    assert registry.PROBE_TYPES == ("icmp", "tcp", "http", "sip", "media")
    assert [spec.name for spec in SPECS] == list(registry.SPECS)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_spec_is_consistent(spec: ProbeSpec[Any]) -> None:
    """Profile field, settings model, deadline, measures and the probe function agree."""
    field = Profile.model_fields[spec.name]
    assert set(typing.get_args(field.annotation)) == {spec.settings, types.NoneType}
    assert field.default is None  # a profile runs only the probes it names
    settings = defaults(spec)
    assert spec.deadline(settings) > 0
    assert registry.deadline_of(spec.name, settings) == spec.deadline(settings)
    assert set(spec.measures) <= set(MEASURE_NAMES)
    assert spec.measures, "a probe reports at least one figure"
    period = spec.own_period(settings)
    assert period is None or period > 0
    assert registry.PROBES[spec.name] is spec.probe
    assert typing.get_type_hints(spec.probe)["ctx"] is ProbeContext


def test_profile_fields_are_the_registry() -> None:
    assert list(Profile.model_fields) == [*registry.PROBE_TYPES, "reachable_by", "required"]
    reachable_by = Profile.model_fields["reachable_by"].annotation
    (names,) = typing.get_args(typing.get_args(reachable_by)[0])  # list[Literal[...]] | None
    assert typing.get_args(names) == registry.PROBE_TYPES


def test_derived_tables() -> None:
    """The tables that used to be written out by hand, now derived: same contents."""
    assert sorted(registry.RTT_PROBES) == ["icmp", "media", "sip", "tcp"]  # http: first byte
    assert health.RTT_PROBES == registry.RTT_PROBES
    assert registry.REACHABILITY_PROBES == ("icmp", "tcp", "sip")
    assert registry.SEPARATE == ("media",)
    assert metrics.MEASURES == {
        "icmp": ("rtt", "jitter", "loss"),
        "tcp": ("rtt",),
        "http": ("rtt",),
        "sip": ("rtt",),
        "media": ("rtt", "jitter", "loss"),  # its MOS is confmon_point_mos
    }
    assert registry.MEASURES["media"] == ("rtt", "jitter", "loss", "mos")
    media = registry.SPECS["media"]
    assert media.own_period(defaults(media)) == 30.0
    assert [s.name for s in SPECS if not s.takes_port] == ["icmp"]


def test_spec_rejects_unknown_measures() -> None:
    icmp = registry.SPECS["icmp"]
    with pytest.raises(ValueError, match="subset"):
        ProbeSpec(
            name="x",
            settings=icmp.settings,
            probe=icmp.probe,
            deadline=icmp.deadline,
            measures=("rtt", "latency"),
        )


def test_config_tools_do_not_load_aiohttp() -> None:
    """Reading a config builds the profiles from the registry without importing aiohttp."""
    code = (
        "import sys\n"
        "from monitor.inventory import load_inventory\n"
        "from monitor.probes import registry\n"
        "assert 'aiohttp' not in sys.modules, 'aiohttp imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=30)
