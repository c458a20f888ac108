"""Grafana's own dashboard schema as a check: every key and enum value of a dashboard JSON.

Grafana's server is not installable here, but Grafana generates ``grafana-foundation-sdk``
from the same schema (CUE) its server and front end use. Loading a dashboard into the SDK's
models and writing it back drops every key the schema does not know (a misspelt option is
silently ignored by Grafana too, so it would be a panel that does not do what it says);
walking the models finds every enum field holding a value the schema does not list.

The SDK does not model a few keys that Grafana does read; :data:`SDK_GAPS` lists them, each
checked by hand against Grafana's source.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models.dashboard import Dashboard

register_default_plugins()

#: keys Grafana reads that SDK 11.6 does not model (path suffix -> where Grafana reads it)
SDK_GAPS = {
    "/__inputs": "export/import inputs (public/app/features/manage-dashboards)",
    "/__requires": "export/import requirements (same)",
    "/definition": "query variable's display text (PrometheusVariableSupport)",
    "/step": "Prometheus annotation query (packages/grafana-prometheus/src/annotations.ts)",
    "/useValueForTime": "same",
    "/titleFormat": "same",
    "/textFormat": "same",
    "/tagKeys": "same",
}


def _walk_dropped(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key, value in a.items():
            here = f"{path}/{key}"
            if key not in b:
                if value is not None and not any(here.endswith(g) for g in SDK_GAPS):
                    out.append(f"{here}: not in Grafana's schema")
            else:
                _walk_dropped(value, b[key], here, out)
    elif isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            _walk_dropped(x, y, f"{path}[{i}]", out)


def _enum_of(hint: Any) -> type[enum.Enum] | None:
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            found = _enum_of(arg)
            if found is not None:
                return found
    return None


def _walk_enums(obj: Any, path: str, out: list[str], seen: set[int]) -> None:
    if id(obj) in seen or isinstance(obj, str | int | float | bool | type(None)):
        return
    seen.add(id(obj))
    if isinstance(obj, list | tuple):
        for i, x in enumerate(obj):
            _walk_enums(x, f"{path}[{i}]", out, seen)
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            _walk_enums(v, f"{path}/{k}", out, seen)
        return
    try:
        hints = typing.get_type_hints(type(obj))
    except Exception:  # a model whose hints do not resolve: nothing to check there
        hints = {}
    for name, hint in hints.items():
        value = getattr(obj, name, None)
        kind = _enum_of(hint)
        if kind is not None and isinstance(value, str) and not isinstance(value, enum.Enum):
            allowed = {m.value for m in kind}
            if value not in allowed:
                out.append(f"{path}/{name}: {value!r} is not one of {sorted(allowed)}")
        _walk_enums(value, f"{path}/{name}", out, seen)


def problems(dashboard: dict[str, Any]) -> list[str]:
    """What Grafana's schema does not accept in ``dashboard``: unknown keys, bad enum values,
    or a structure the models cannot load at all."""
    try:
        model = Dashboard.from_json(dashboard)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        return [f"does not load: {type(e).__name__}: {e}"]
    out: list[str] = []
    _walk_dropped(dashboard, json.loads(json.dumps(model, cls=JSONEncoder)), "", out)
    _walk_enums(model, "", out, set())
    return out
