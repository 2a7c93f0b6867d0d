"""The console's command line: ``adviser add|reset-password|disable|list`` and ``org list``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any, TextIO

from bot.console.accounts import (
    AccountError,
    add_adviser,
    disable_adviser,
    list_advisers,
    reset_password,
)
from bot.content import load_content
from bot.errors import StorageUnavailable
from bot.settings import Settings
from bot.storage.database import Database

EXIT_USAGE = 2


def add_commands(sub: Any) -> None:
    """Add the ``adviser`` and ``org`` commands to the main parser's subparsers."""
    adviser = sub.add_parser("adviser", help="manage console accounts of advisers")
    actions = adviser.add_subparsers(dest="adviser_command", required=True)
    add = actions.add_parser("add", help="create an adviser account")
    add.add_argument("--org", required=True, help="organisation id (see `org list`)")
    add.add_argument("--username", required=True)
    add.add_argument("--name", required=True, help="display name shown to colleagues")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    reset = actions.add_parser("reset-password", help="set a new password, lift a lock, end sessions")
    reset.add_argument("--username", required=True)
    reset.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    disable = actions.add_parser("disable", help="disable an account and end its sessions")
    disable.add_argument("--username", required=True)
    listing = actions.add_parser("list", help="list adviser accounts")
    listing.add_argument("--org", help="only this organisation")
    org = sub.add_parser("org", help="organisations of the cooperation")
    org.add_subparsers(dest="org_command", required=True).add_parser("list", help="list organisation ids")


def _password(args: argparse.Namespace, stdin: TextIO) -> str:
    if args.password_stdin:
        return stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Passwort: ")
    if getpass.getpass("Passwort wiederholen: ") != first:
        raise AccountError("the passwords do not match")
    return first


def run(
    args: argparse.Namespace,
    settings: Settings,
    *,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Carry out an ``adviser`` or ``org`` command; errors end with one line and exit code 2."""
    stdin, out, err = stdin or sys.stdin, out or sys.stdout, err or sys.stderr
    organisations = load_content(settings.content_dir).organisations
    if args.command == "org":
        for org_id, name in organisations.items():
            print(f"{org_id}\t{name}", file=out)
        return 0
    try:
        if args.adviser_command == "add" and args.org not in organisations:
            raise AccountError(
                f"unknown organisation {args.org!r}; known: {', '.join(sorted(organisations))}"
            )
        password = _password(args, stdin) if args.adviser_command in ("add", "reset-password") else ""
        return asyncio.run(_run(args, settings, organisations, password, out))
    except (AccountError, StorageUnavailable) as exc:
        print(f"lotse: {exc}", file=err)
        return EXIT_USAGE


async def _run(
    args: argparse.Namespace, settings: Settings, organisations: dict[str, str], password: str, out: TextIO
) -> int:
    database = Database(settings.database_url)
    try:
        async with database.unit_of_work() as session:
            command = args.adviser_command
            if command == "list":
                for info in await list_advisers(session, organisation=args.org):
                    state = "active" if info.active else "disabled"
                    if info.locked:
                        state += ", locked"
                    print(
                        f"{info.id}\t{info.organisation}\t{info.username}\t{info.display_name}\t{state}",
                        file=out,
                    )
                return 0
            if command == "add":
                adviser = await add_adviser(
                    session,
                    organisations=organisations,
                    organisation=args.org,
                    username=args.username,
                    display_name=args.name,
                    password=password,
                )
                message = f"adviser {adviser.username} ({adviser.organisation}) created with id"
            elif command == "reset-password":
                adviser = await reset_password(session, username=args.username, password=password)
                message = f"password of {adviser.username} reset; sessions ended; id"
            else:
                adviser = await disable_adviser(session, username=args.username)
                message = f"adviser {adviser.username} disabled; sessions ended; id"
            await session.commit()
            print(f"{message} {adviser.id}", file=out)
            return 0
    finally:
        await database.dispose()
