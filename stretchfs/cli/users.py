"""`stretchfs user create|list|deactivate|operator`: manage users through the master."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any, TextIO

from stretchfs.cli.main import master_command

if TYPE_CHECKING:
    from stretchfs.wire.master import MasterClient


def add_parser(subparsers: Any) -> None:
    """Register `user` and its subcommands."""
    user = subparsers.add_parser("user", help="manage users (through the master)")
    sub = user.add_subparsers(dest="user_command", required=True)
    create = master_command(sub, "create", create_user,
                            help="create a user; prints its password once")
    create.add_argument("name", help="the new user's name ([a-z0-9._-], 1-64 characters)")
    create.add_argument("--operator", action="store_true",
                        help="the user may also sign in to the master's dashboard")
    master_command(sub, "list", list_users, help="list users")
    deactivate = master_command(sub, "deactivate", deactivate_user,
                                help="deactivate a user and end its sessions")
    deactivate.add_argument("name", help="the user to deactivate")
    operator = master_command(sub, "operator", set_operator, help="grant (or --revoke) the "
                              "right to sign in to the master's dashboard")
    operator.add_argument("name", help="the user")
    operator.add_argument("--revoke", action="store_true", help="take the right away")


async def create_user(client: MasterClient, args: argparse.Namespace, out: TextIO) -> int:
    """Create the user and print its generated password (shown only this once)."""
    created = await client.create_user(args.name, operator=args.operator)
    out.write("{} {} created\n".format("operator" if args.operator else "user",
                                       created["username"]))
    out.write("password: {}\n".format(created["password"]))
    out.write("(the password is shown only this once)\n")
    return 0


async def set_operator(client: MasterClient, args: argparse.Namespace, out: TextIO) -> int:
    """Grant or revoke the operator flag."""
    await client.set_operator(args.name, not args.revoke)
    out.write("user {} {} an operator\n".format(args.name, "is no longer" if args.revoke
                                                else "is now"))
    return 0


async def list_users(client: MasterClient, args: argparse.Namespace, out: TextIO) -> int:
    """Print one line per user."""
    users = await client.list_users()
    out.write("{:<24} {:<8} {:<9} {:<20} {}\n".format("USERNAME", "ACTIVE", "OPERATOR",
                                                       "CREATED (UTC)", "FAILED LOGINS"))
    for user in users:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(user["created"]))
        out.write("{:<24} {:<8} {:<9} {:<20} {}\n".format(
            user["username"], "yes" if user["active"] else "no",
            "yes" if user.get("operator") else "no", created, user["failed_logins"]))
    return 0


async def deactivate_user(client: MasterClient, args: argparse.Namespace, out: TextIO) -> int:
    """Deactivate the user."""
    await client.deactivate_user(args.name)
    out.write("user {} deactivated; its sessions ended\n".format(args.name))
    return 0
