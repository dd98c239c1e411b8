"""``medrag auth hash-password``: the educator's password as the hash MEDRAG_EDUCATOR_PASSWORD_HASH holds."""

from __future__ import annotations

import argparse
import getpass
import sys

from medrag.cli.common import Subparsers
from medrag.cli.output import echo
from medrag.errors import InputError


def _read_password() -> str:
    if not sys.stdin.isatty():  # piped in (scripts, tests): the first line
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Educator password: ")
    if getpass.getpass("Again: ") != first:
        raise InputError("The two passwords differ; run `medrag auth hash-password` again.")
    return first


def cmd_auth(args: argparse.Namespace) -> int:
    """Print the hash of a password read from the terminal (or the first line of stdin)."""
    from medrag.roles import hash_password

    hashed = hash_password(_read_password())
    echo(hashed)
    echo("Set it for the app (environment or .streamlit/secrets.toml), never the password itself:", err=True)
    echo(f"  MEDRAG_EDUCATOR_PASSWORD_HASH='{hashed}'", err=True)
    return 0


def add_parsers(sub: Subparsers) -> None:
    """Add ``auth`` to the ``medrag`` subcommands."""
    p = sub.add_parser("auth", help="roles for a class: hash-password (the educator's sign-in)")
    p.add_argument("action", choices=["hash-password"])
    p.set_defaults(func=cmd_auth)
