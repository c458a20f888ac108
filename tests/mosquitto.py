"""A real Mosquitto broker for tests, configured from the shipped ``configs/mosquitto/``.

The broker gets the shipped settings and ACL (so the tests prove that the ACL an
operator copies does what docs/operations.md says), a password file made with
``mosquitto_passwd`` for the users a test asks for, and a listener on a free
loopback port. :meth:`Broker.stop` and :meth:`Broker.start` let a test take the
broker away and bring it back on the same port, with its retained messages
(persistence is on, in the test's directory).
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from pathlib import Path

from tests.helpers import CONFIGS, free_port, require_binary

__all__ = ["Broker"]

SERVER_USER = "confmon-server"


def _shipped_settings(passwd: Path) -> list[str]:
    """The shipped mosquitto.conf up to its listeners, pointed at the test's files."""
    out: list[str] = []
    for line in (CONFIGS / "mosquitto" / "mosquitto.conf").read_text().splitlines():
        if line.startswith("listener"):
            break
        if line.startswith("password_file"):
            line = f"password_file {passwd}"
        elif line.startswith("acl_file"):
            line = f"acl_file {CONFIGS / 'mosquitto' / 'acl'}"
        out.append(line)
    return out


class Broker:
    """A Mosquitto process on 127.0.0.1:``port`` with users ``{name: password}``."""

    def __init__(self, directory: Path, users: dict[str, str]) -> None:
        self.binary = require_binary("mosquitto")
        passwd_tool = require_binary("mosquitto_passwd")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.users = {SERVER_USER: "server-secret", **users}
        passwd = self.dir / "passwd"
        passwd.write_text("")
        for user, password in self.users.items():
            subprocess.run(
                [passwd_tool, "-b", str(passwd), user, password], check=True, capture_output=True
            )
        self.port = free_port()
        conf = [
            *_shipped_settings(passwd),
            # as root, mosquitto would drop to the 'mosquitto' user, who cannot read tmp dirs
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            "persistence true",
            f"persistence_location {self.dir}/",
            f"listener {self.port} 127.0.0.1",
        ]
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(conf) + "\n")
        self.log = self.dir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, within: float = 20.0) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf), "-v"], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {within} s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
