"""What the agent and the server share about MQTT: topics, the broker address, credentials, TLS.

The topics are a contract (../shared/design.md, "MQTT"): under
``confmon/v1/agents/{agent}/`` an agent publishes ``results`` (QoS 1, one batch
per message) and its retained ``status`` (``online``; the broker publishes the
last will ``offline`` when the agent's connection dies), and the server publishes
each agent's retained, versioned ``assignment``. The agent id is one topic level,
so it may not hold ``/``, ``+`` or ``#``; the rule below is stricter (letters,
digits, ``.``, ``_``, ``-``), which also makes it a safe Mosquitto user name for
the ACL ``pattern`` lines in ``configs/mosquitto/acl``.

Secrets never need to be on the command line (where ``ps`` shows them): the
password comes from ``CONFMON_MQTT_PASSWORD`` or ``--password-file``.

aiomqtt 2.x (a thin asyncio layer over paho-mqtt) is the client; this module only
builds its arguments and adds what both sides need around it: a reconnect
:class:`Backoff` with full jitter, so 30 agents that lost the broker together do
not all come back in the same second, and :func:`connect_failure`, the one line that
says why the broker cannot be used. That line matters most for TLS: a broker
certificate the CA file does not vouch for is ``[SSL: CERTIFICATE_VERIFY_FAILED] ...``
from the handshake, but a broker that wants a client certificate (none sent, or one
it does not trust) ends the session right after the handshake, which the client
only sees as a timeout waiting for the broker's answer while paho logs the broker's
alert at ERROR on every attempt. :class:`WireLog` takes paho's socket errors out of
the operator's log (debug only) and keeps the last one as the real reason.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from monitor.backoff import Backoff
from monitor.errors import UsageError
from monitor.text import quoted

__all__ = [
    "PASSWORD_ENV",
    "TOPIC_ROOT",
    "USERNAME_ENV",
    "Backoff",
    "BrokerConfig",
    "WireLog",
    "agent_topic",
    "check_agent_id",
    "connect_failure",
    "parse_broker",
    "split_topic",
]

TOPIC_ROOT = "confmon/v1/agents"
USERNAME_ENV = "CONFMON_MQTT_USERNAME"
PASSWORD_ENV = "CONFMON_MQTT_PASSWORD"

#: what an agent id may be: one safe topic level and a safe broker user name
_AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KINDS = frozenset({"results", "status", "assignment"})
_DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


def check_agent_id(agent: str) -> str:
    """``agent`` if it is a valid agent id, else a :class:`UsageError` saying what is allowed."""
    if not _AGENT_ID.fullmatch(agent):
        raise UsageError(
            f"agent id {quoted(agent)}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return agent


def agent_topic(agent: str, kind: str) -> str:
    """The topic of ``kind`` (results, status, assignment) for ``agent``."""
    if kind not in _KINDS:
        raise ValueError(f"unknown topic kind {kind!r}")
    return f"{TOPIC_ROOT}/{agent}/{kind}"


def split_topic(topic: str) -> tuple[str, str] | None:
    """``(agent, kind)`` of one of our topics, or ``None`` for anything else."""
    prefix = TOPIC_ROOT + "/"
    if not topic.startswith(prefix):
        return None
    agent, sep, kind = topic[len(prefix) :].partition("/")
    if not sep or kind not in _KINDS or not _AGENT_ID.fullmatch(agent):
        return None
    return agent, kind


@dataclass(frozen=True)
class BrokerConfig:
    """Where the broker is and how to log in to it."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def __str__(self) -> str:
        scheme = "mqtts" if self.tls else "mqtt"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context for an ``mqtts://`` broker (system CAs unless ``ca_file``)."""
        if not self.tls:
            return None
        try:
            ctx = ssl.create_default_context(
                cafile=str(self.ca_file) if self.ca_file is not None else None
            )
            if self.cert_file is not None:
                ctx.load_cert_chain(
                    str(self.cert_file), str(self.key_file) if self.key_file else None
                )
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"TLS for {self}: {exc}") from None
        return ctx


def parse_broker(
    url: str,
    *,
    username: str | None = None,
    default_user: str | None = None,
    password_file: str | None = None,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    env: dict[str, str] | None = None,
) -> BrokerConfig:
    """A broker from ``mqtt[s]://[user@]host[:port]`` and the credential options.

    The user name comes from the URL, ``username`` or ``CONFMON_MQTT_USERNAME``, else
    ``default_user`` when there is a password; the password from ``password_file`` or
    ``CONFMON_MQTT_PASSWORD``. A password in the
    URL is refused: it would be visible to every user of the machine in ``ps``.
    """
    env = dict(os.environ) if env is None else env
    parts = urlsplit(url.strip())
    if parts.scheme not in _DEFAULT_PORTS:
        raise UsageError(
            f"--broker {quoted(url)}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
        )
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise UsageError(f"--broker {quoted(url)}: the port must be a number 1-65535") from None
    host = parts.hostname
    if not host or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(
            f"--broker {quoted(url)}: expected mqtt://HOST[:PORT] with nothing after it"
        )
    if parts.password is not None:
        raise UsageError(
            f"--broker: put the password in {PASSWORD_ENV} or --password-file, not in the URL"
        )
    user = unquote(parts.username) if parts.username else (username or env.get(USERNAME_ENV))
    password: str | None = None
    if password_file is not None:
        try:
            password = Path(password_file).read_text(encoding="utf-8").strip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise UsageError(f"--password-file {quoted(password_file)}: {why}") from None
    elif env.get(PASSWORD_ENV):
        password = env[PASSWORD_ENV]
    if password is not None and not user:
        user = default_user
    if password is not None and not user:
        raise UsageError(
            f"a broker password is set but no user name (--username or {USERNAME_ENV})"
        )
    tls = parts.scheme == "mqtts"
    if not tls and (ca_file or cert_file):
        raise UsageError("--ca-file and --cert need an mqtts:// broker")
    if key_file and not cert_file:
        raise UsageError("--key needs --cert")
    cfg = BrokerConfig(
        host=host,
        port=port,
        tls=tls,
        username=user or None,
        password=password,
        ca_file=Path(ca_file) if ca_file else None,
        cert_file=Path(cert_file) if cert_file else None,
        key_file=Path(key_file) if key_file else None,
    )
    cfg.tls_context()  # a missing or bad CA or certificate file is said now, not at connect
    return cfg


#: how paho starts the errors it logs when a connection's socket fails
_SOCKET_ERRORS = ("failed to receive on socket: ", "timeout on socket: ")
#: what aiomqtt says when a connection it was reading from ends
_LOST = "Disconnected during message iteration"
#: aiomqtt's errors that say less than paho's last socket error
_VAGUE = ("", "Operation timed out", _LOST)
#: ``[SSL: CODE] text (_ssl.c:N)``: how the ssl module's errors read
_SSL_ERROR = re.compile(r"\[SSL: [A-Z0-9_]+\] (?P<text>.+?)(?: \(_ssl\.c:\d+\))?$")
#: what to check, by words of the TLS error (the first that matches)
_TLS_HINTS = (
    ("mismatch", "the broker's certificate is not for the host in --broker"),
    ("certificate verify failed", "check --ca-file (the CA that signed the broker's certificate)"),
    ("certificate required", "the broker requires a client certificate (--cert, --key)"),
    ("unknown ca", "the broker does not accept this client certificate (not from its CA?)"),
    ("bad certificate", "the broker does not accept this client certificate"),
    ("certificate unknown", "the broker does not accept this client certificate"),
)
#: the ssl module's words when the peer hangs up in the handshake instead of sending an
#: alert: a broker that requires or refuses a client certificate may do either
_TLS_EOF = "EOF occurred in violation of protocol"


class WireLog(logging.Filter):
    """The MQTT library's log for one side (``confmon.mqtt.<name>``; pass :attr:`logger` to
    aiomqtt): its socket errors go to debug only, the last one kept for :meth:`take`."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.logger = logging.getLogger(f"confmon.mqtt.{name}")
        for old in [f for f in self.logger.filters if isinstance(f, WireLog)]:
            self.logger.removeFilter(old)  # the agent or server made before this one
        self.logger.addFilter(self)
        self._last: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(_SOCKET_ERRORS):
            return True
        self._last = message
        return self.logger.isEnabledFor(logging.DEBUG)

    def take(self) -> str | None:
        """The last socket error since the previous call, if any."""
        last, self._last = self._last, None
        return last


def connect_failure(why: str, socket_error: str | None = None) -> str:
    """Why the broker could not be used, in one line with what to check.

    ``why`` is the client's error; ``socket_error`` the last one paho logged
    (:meth:`WireLog.take`), which says more when ``why`` is only a timeout.
    """
    if socket_error is not None and why in _VAGUE:
        why = socket_error
        for prefix in _SOCKET_ERRORS:
            why = why.removeprefix(prefix)
    elif why == _LOST:
        why = "connection lost"
    if _TLS_EOF in why:
        return (
            "TLS: the broker closed the connection in the handshake; it requires a client "
            "certificate (--cert, --key) or does not accept this client certificate"
        )
    tls = _SSL_ERROR.search(why)
    if tls is not None:
        text = tls["text"].rstrip(".")
        hint = next((h for words, h in _TLS_HINTS if words in text), None)
        return f"TLS: {text}; {hint}" if hint else f"TLS: {text}"
    if "Not authorized" in why or "Bad user name or password" in why:
        return f"{why}: the broker refused this user name and password"
    return why
