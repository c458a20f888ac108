"""A real Mosquitto broker for tests, configured from the shipped ``configs/mosquitto/``.

The broker gets the shipped settings and ACL (so the tests prove that the ACL an
operator copies does what docs/operations.md says), a password file made with
``mosquitto_passwd`` for the users a test asks for, and a listener on a free
loopback port. :meth:`Broker.stop` and :meth:`Broker.start` let a test take the
broker away and bring it back on the same port, with its retained messages
(persistence is on, in the test's directory).

With ``tls=`` (a :class:`Pki`, a test CA made with ``openssl``) the listener speaks
TLS only (``mqtts://``): ``certfile`` and ``keyfile`` (a broker certificate for
127.0.0.1 and localhost), as the shipped config's TLS listener; ``client_certs=True`` adds
what its comment says for client certificates: ``cafile``, ``require_certificate
true`` and ``use_identity_as_username true`` (the certificate's CN is the user name
the ACL sees).
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from pathlib import Path

from tests.helpers import CONFIGS, free_port, require_binary

__all__ = ["SERVER_USER", "Broker", "Pki"]

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


#: a new EC P-256 key, unencrypted (``openssl req`` options)
_NEW_KEY = ("-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")


class Pki:
    """A certificate authority of the test's own, made with ``openssl`` in ``directory``.

    :meth:`issue` makes a certificate and key signed by it: for a server (for
    127.0.0.1 and localhost) or for a client (its CN is the name given). EC P-256
    keys, valid for two days, with the extensions a strict verifier asks for.
    """

    def __init__(self, directory: Path, name: str = "confmon test CA") -> None:
        self.openssl = require_binary("openssl")
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = self.dir / "ca.crt"
        self.ca_key = self.dir / "ca.key"
        self._run(
            "req", "-x509", *_NEW_KEY, "-days", "2", "-subj", f"/CN={name}",
            "-keyout", str(self.ca_key), "-out", str(self.ca),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip

    def _run(self, *args: str) -> None:
        subprocess.run([self.openssl, *args], check=True, capture_output=True, timeout=30)

    def issue(self, name: str, *, server: bool = False) -> tuple[Path, Path]:
        """(certificate, key) for ``name``: a server's for 127.0.0.1/localhost, or a client's."""
        cert, key, csr = (self.dir / f"{name}.{ext}" for ext in ("crt", "key", "csr"))
        ext = self.dir / f"{name}.ext"
        ext.write_text(
            "basicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n"
            + (
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
                if server
                else "extendedKeyUsage=clientAuth\n"
            )
        )
        self._run("req", *_NEW_KEY, "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(csr))
        self._run(
            "x509", "-req", "-in", str(csr), "-CA", str(self.ca), "-CAkey", str(self.ca_key),
            "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", "2",
            "-extfile", str(ext), "-out", str(cert),
        )  # fmt: skip
        return cert, key


class Broker:
    """A Mosquitto process on 127.0.0.1:``port`` with users ``{name: password}``; TLS only
    when ``tls`` is given (see the module docstring)."""

    def __init__(
        self,
        directory: Path,
        users: dict[str, str],
        *,
        tls: Pki | None = None,
        client_certs: bool = False,
        verbose: bool = True,
    ) -> None:
        """``verbose``: ``-v``, a log line per message, which the tests read (a benchmark at
        20,000 messages a second turns it off: it would be the broker's main work)."""
        self.verbose = verbose
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
        self.tls = tls
        if tls is not None:
            cert, key = tls.issue("broker", server=True)
            conf += [f"certfile {cert}", f"keyfile {key}"]  # as shipped: no cafile for passwords
            if client_certs:
                conf += [
                    f"cafile {tls.ca}",
                    "require_certificate true",
                    "use_identity_as_username true",
                ]
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text("\n".join(conf) + "\n")
        self.log = self.dir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self, within: float = 20.0) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf), *(["-v"] if self.verbose else [])],
                stdout=out,
                stderr=subprocess.STDOUT,
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
