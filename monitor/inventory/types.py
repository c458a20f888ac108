"""The value types of the inventory schema, shared by :mod:`monitor.inventory.model` and the probes.

Each probe module declares its own settings model (``IcmpSettings`` in
:mod:`monitor.probes.icmp`, ...) with these types, so that a probe's settings
read and fail exactly like the rest of the file. This module imports pydantic
and :mod:`monitor.inventory.units` only: the probes import it, and the
inventory model imports the probes' registry, so anything more would be a cycle.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from monitor.inventory.units import parse_duration, parse_host, parse_point_id, parse_ratio

__all__ = ["Duration", "Host", "Name", "PointId", "Port", "Ratio", "Strict"]

Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds (> 0), written ``20ms``, ``5s``, ``1m30s`` or as a number."""
Ratio = Annotated[float, BeforeValidator(parse_ratio)]
"""0..1, written ``2%`` or ``0.02``."""
Port = Annotated[int, Field(ge=1, le=65535)]
Host = Annotated[str, BeforeValidator(parse_host)]
"""An IP address (normalised) or a host name (lower-cased)."""
PointId = Annotated[str, BeforeValidator(parse_point_id)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class Strict(BaseModel):
    """Base of every model of the file: unknown keys rejected, instances frozen, and types
    strict: ``port: true`` is not port 1, ``count: 2.0`` not a whole number and
    ``tls_verify: 1`` not a yes (durations, ratios and hosts have parsers of their own)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
