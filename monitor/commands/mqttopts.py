"""The broker options that ``confmon agent`` and ``confmon server`` share."""

from __future__ import annotations

import argparse

from monitor.transport.mqtt import PASSWORD_ENV, USERNAME_ENV, BrokerConfig, parse_broker

__all__ = ["add_broker_options", "broker_from_args"]


def add_broker_options(p: argparse.ArgumentParser) -> None:
    """``--broker`` and the credential and TLS options."""
    p.add_argument(
        "--broker",
        required=True,
        metavar="URL",
        help="the MQTT broker: mqtt://HOST[:PORT] (1883) or mqtts://HOST[:PORT] (8883, TLS)",
    )
    p.add_argument(
        "--username",
        metavar="NAME",
        help=f"broker user name (or set {USERNAME_ENV}); default: the agent id, or "
        "confmon-server for the server (the names the shipped ACL expects)",
    )
    p.add_argument(
        "--password-file",
        metavar="FILE",
        help=f"file holding the broker password (or set {PASSWORD_ENV}; never on the command line)",
    )
    p.add_argument("--ca-file", metavar="FILE", help="CA certificates for an mqtts:// broker")
    p.add_argument("--cert", metavar="FILE", help="client certificate (PEM) for an mqtts:// broker")
    p.add_argument("--key", metavar="FILE", help="its private key, if not in --cert")


def broker_from_args(args: argparse.Namespace, default_user: str) -> BrokerConfig:
    """The broker of ``--broker`` and friends; the user name is ``default_user`` (the agent
    id, or ``confmon-server``) when a password is given and no name."""
    return parse_broker(
        args.broker,
        username=args.username,
        default_user=default_user,
        password_file=args.password_file,
        ca_file=args.ca_file,
        cert_file=args.cert,
        key_file=args.key,
    )
