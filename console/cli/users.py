"""`python -m console user add|passwd|delete|list`: page login users."""

from __future__ import annotations

import getpass
import sys

from console.cli.registry import arg, command
from console.domain import audit
from console.domain.errors import Conflict, Invalid, NotFound
from console.domain.users import create_user, delete_user, list_users, set_password
from console.store.db import Database


@command(
    "user",
    "Manage console users (page login): add, passwd, delete, list. The password is read from stdin or a prompt.",
    arg("action", choices=["add", "passwd", "delete", "list"]),
    arg("username", nargs="?"),
    arg("--password-stdin", action="store_true", help="read the password from the first line of stdin"),
)
def user_command(settings, options) -> int:
    database = Database(settings)
    try:
        if options.action == "list":
            with database.read() as session:
                for name in list_users(session):
                    print(name)
            return 0
        if not options.username:
            print("error: a username is needed", file=sys.stderr)
            return 2
        if options.action == "delete":
            database.write(lambda s: (delete_user(s, options.username),
                                      audit.record(s, "cli", "delete_user", detail=options.username)))
            print(f"deleted user {options.username}")
            return 0
        if options.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass("password: ")
            if getpass.getpass("again: ") != password:
                print("error: the passwords differ", file=sys.stderr)
                return 2
        action = create_user if options.action == "add" else set_password
        database.write(lambda s: (action(s, options.username, password),
                                  audit.record(s, "cli", f"{options.action}_user", detail=options.username)))
        print(("added user " if options.action == "add" else "changed the password of ") + options.username)
        return 0
    except (Conflict, Invalid, NotFound) as exc:
        print(f"error: {exc.detail}", file=sys.stderr)
        return 1
    finally:
        database.dispose()
