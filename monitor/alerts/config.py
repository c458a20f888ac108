"""The ``alerts:`` section of the inventory: receivers and how changes are grouped.

Contract keys (../shared/design.md): ``group_wait``, ``group_by``, ``repeat_interval``
and ``receivers: [{name, url, format, secret_env | secret_file, states, districts,
levels, headers, timeout}]``. Added here: ``storm`` (the city-wide summary), and per
receiver ``chat_id`` (Telegram, Zalo) and ``send_resolved``.

A receiver's ``url`` may hold ``{secret}``: Telegram's and Zalo's bot token is part of
the URL, and a Slack incoming-webhook URL is itself the secret, so neither has to be
written in the file. The secret is read when the monitor starts
(:func:`resolve_secret`), never at parse time, so ``check-config`` works on a machine
that has no secrets.
"""

from __future__ import annotations

import os
import re
import stat
import urllib.parse
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BeforeValidator, Field, field_validator, model_validator

from monitor.errors import ConfmonError
from monitor.inventory.types import Duration, PointId, Strict
from monitor.text import quoted

__all__ = [
    "FORMATS",
    "AlertsSettings",
    "Receiver",
    "SecretError",
    "StormGuard",
    "resolve_secret",
]

FORMATS = ("confmon", "alertmanager", "alertmanager-api", "slack", "telegram", "zalo")
Format = Literal["confmon", "alertmanager", "alertmanager-api", "slack", "telegram", "zalo"]
#: the states a receiver may be told about ("up" is what a resolved message says)
StateName = Literal["degraded", "down", "unreachable", "unknown", "maintenance"]
#: the states that notify when a receiver does not say: a room out of the call, or in it
#: with poor quality. ``unknown`` (a monitoring gap) and ``maintenance`` only when asked.
DEFAULT_STATES: tuple[StateName, ...] = ("down", "unreachable", "degraded")
#: formats that need a chat to send to
CHATS = ("telegram", "zalo")
#: an HTTP header name (RFC 9110 token)
_HEADER = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$"
#: headers confmon sets itself: a receiver may not replace them
_OWN_HEADERS = frozenset(
    {"content-type", "content-length", "host", "x-confmon-signature", "x-confmon-delivery"}
)

ReceiverName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


def check_http_url(value: str) -> None:
    """ValueError unless ``value`` is an http(s) URL with a plausible host (no spaces)."""
    bad = ValueError(f"{quoted(value, 80)} is not an http:// or https:// URL")
    if any(c.isspace() or not c.isprintable() for c in value):
        raise bad
    parsed = urllib.parse.urlsplit(value)
    try:
        host = parsed.hostname
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise bad from None
    if parsed.scheme not in ("http", "https") or not host:
        raise bad
    if not re.fullmatch(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+", host):
        raise bad


def _one_label(value: Any) -> Any:
    """``group_by: [district]`` (Alertmanager's list form) is ``district``."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    if isinstance(value, list):
        raise ValueError("group by one of district, cause, point or city (a list of one)")
    return value


class StormGuard(Strict):
    """More than ``changes`` state changes within ``window``: one city-wide summary per
    receiver instead of one message per group, until the window is quiet again."""

    changes: Annotated[int, Field(ge=1, le=100_000)] = 100
    window: Duration = 60.0


class Receiver(Strict):
    """One destination of notifications."""

    name: ReceiverName
    url: Annotated[str, Field(min_length=1, max_length=2000)]
    format: Format = "confmon"
    secret_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")] | None = None
    secret_file: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    #: Telegram's and Zalo's chat id (a number, or @channel for Telegram)
    chat_id: Annotated[str, Field(min_length=1, max_length=100)] | int | None = None
    states: Annotated[list[StateName], Field(min_length=1)] = Field(
        default_factory=lambda: list(DEFAULT_STATES)
    )
    districts: list[PointId] = Field(default_factory=list)
    levels: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]*$", max_length=40)]] = Field(
        default_factory=list
    )
    headers: dict[
        Annotated[str, Field(pattern=_HEADER)], Annotated[str, Field(max_length=4000)]
    ] = Field(default_factory=dict)
    timeout: Annotated[Duration, Field(le=120.0)] = 10.0
    send_resolved: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        rest = value.replace("{secret}", "")
        if "{" in rest or "}" in rest:
            raise ValueError(
                f"{quoted(value, 80)}: the only placeholder a url may hold is {{secret}}"
            )
        if value == "{secret}":
            return value  # the whole URL is the secret: checked once it is read
        if value.startswith("{secret}"):
            raise ValueError("{secret} stands for a whole url or for a part after the host")
        check_http_url(value.replace("{secret}", "secret"))
        return value

    @field_validator("headers")
    @classmethod
    def _not_ours(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if key.lower() in _OWN_HEADERS:
                raise ValueError(f"header {key} is set by confmon and cannot be replaced")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.secret_env is not None and self.secret_file is not None:
            raise ValueError("give secret_env or secret_file, not both")
        has_secret = self.secret_env is not None or self.secret_file is not None
        if self.format in CHATS and self.chat_id is None:
            raise ValueError(f"the {self.format} format needs chat_id (the chat to send to)")
        if "{secret}" in self.url and not has_secret:
            raise ValueError("the url holds {secret}: give secret_env or secret_file")
        if has_secret and self.format != "confmon" and "{secret}" not in self.url:
            raise ValueError(
                f"the {self.format} format uses its secret only in the url: put {{secret}} "
                "where it goes (e.g. .../bot{secret}/sendMessage), or remove the secret"
            )
        if self.format == "confmon" and not has_secret:
            raise ValueError(
                "the confmon format is signed (X-Confmon-Signature): give secret_env or "
                "secret_file with the key"
            )
        return self


class AlertsSettings(Strict):
    """The ``alerts:`` section."""

    #: how long changes are gathered before a group's message is sent
    group_wait: Annotated[float, Field(ge=0.0, le=600.0)] = 2.0
    group_by: Annotated[
        Literal["district", "cause", "point", "city"], BeforeValidator(_one_label)
    ] = "district"
    #: a reminder while a group is still firing (0: none)
    repeat_interval: Annotated[float, Field(ge=0.0)] = 3600.0
    storm: StormGuard = Field(default_factory=StormGuard)
    #: a link put in every message (the operators' Grafana or dashboard), if given
    external_url: Annotated[str, Field(max_length=2000)] = ""
    #: after a group's message, the least time before the next one for it (an update:
    #: rooms added or recovered); the first message of a group waits only ``group_wait``
    group_interval: Annotated[float, Field(ge=0.0, le=3600.0)] = 30.0
    receivers: list[Receiver] = Field(default_factory=list)

    @field_validator("group_wait", "repeat_interval", "group_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        from monitor.inventory.units import parse_duration

        if isinstance(value, str) and re.fullmatch(r"\s*0+(\.0*)?\s*(ms|s|m|h|d)?\s*", value):
            return 0.0  # "0", "0s": off (parse_duration wants a positive duration)
        if value == 0 and not isinstance(value, bool):
            return 0.0
        return parse_duration(value)

    @field_validator("external_url")
    @classmethod
    def _link(cls, value: str) -> str:
        if value:
            check_http_url(value)
        return value

    @field_validator("repeat_interval")
    @classmethod
    def _not_a_flood(cls, value: float) -> float:
        if 0 < value < 60:
            raise ValueError("repeat_interval below 1m would flood the chat (0 turns it off)")
        return value

    @field_validator("receivers")
    @classmethod
    def _unique(cls, value: list[Receiver]) -> list[Receiver]:
        seen: set[str] = set()
        for r in value:
            if r.name in seen:
                raise ValueError(f"two receivers are named {r.name}")
            seen.add(r.name)
        return value


def _read_regular(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of a regular file. Opened without blocking, so that a FIFO
    without a writer (or a device) is refused at once instead of hanging the start."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
            raise OSError(0, f"{kind} (give a file holding the secret)")
        return os.read(fd, limit)
    finally:
        os.close(fd)


class SecretError(ConfmonError):
    """A receiver's secret cannot be had: a problem of the configuration (exit 2)."""

    exit_code = 2


def resolve_secret(receiver: Receiver) -> str | None:
    """The receiver's secret from the environment or its file; :class:`ConfmonError` if it
    is named but cannot be had (one line: which receiver, which variable or file), or if
    the URL it completes is not an http(s) URL."""
    secret = _read_secret(receiver)
    where = receiver.secret_env or str(receiver.secret_file)
    if receiver.url == "{secret}":
        try:
            check_http_url(secret or "")
        except ValueError:
            raise SecretError(
                f"alerts: receiver {receiver.name}: the url from {where} is not an http:// or "
                "https:// URL"
            ) from None
    elif (
        "{secret}" in receiver.url
        and secret is not None
        and not re.fullmatch(r"[A-Za-z0-9._~:@!$&'()*+,;=-]+", secret)
    ):
        raise SecretError(
            f"alerts: receiver {receiver.name}: the secret from {where} holds characters "
            "that cannot go into its url (spaces, /, ?, #, %): is it the bot's token?"
        )
    return secret


def _read_secret(receiver: Receiver) -> str | None:
    if receiver.secret_env is not None:
        value = os.environ.get(receiver.secret_env, "")
        if not value.strip():
            raise SecretError(
                f"alerts: receiver {receiver.name}: the environment variable "
                f"{receiver.secret_env} (secret_env) is not set or empty"
            )
        return value.strip()
    if receiver.secret_file is not None:
        try:
            data = _read_regular(Path(receiver.secret_file), 65_537)
        except OSError as exc:
            raise SecretError(
                f"alerts: receiver {receiver.name}: cannot read secret_file "
                f"{receiver.secret_file}: {exc.strerror or exc}"
            ) from None
        if len(data) > 65_536:
            raise SecretError(
                f"alerts: receiver {receiver.name}: secret_file {receiver.secret_file} is "
                "over 64 KiB (not a secret?)"
            )
        try:
            text = data.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise SecretError(
                f"alerts: receiver {receiver.name}: secret_file {receiver.secret_file} is not "
                "UTF-8 text"
            ) from None
        if not text:
            raise SecretError(
                f"alerts: receiver {receiver.name}: secret_file {receiver.secret_file} is empty"
            )
        return text
    return None
