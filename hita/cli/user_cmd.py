"""``hita user create``: how the first superadmin of a deployment is made.

``--password -`` reads the password from standard input (one line), so it
stays out of the shell history and the process list.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from contextlib import closing

from hita.api import schemas
from hita.cli.cache_access import invalidate_user_caches
from hita.cli.servers import servers
from hita.config import Config
from hita.db.database import open_database
from hita.domain.roles import Role
from hita.domain.typedefs import JsonDict
from hita.domain.users import NewUser, Operator
from hita.errors import InvalidInput
from hita.services.passwords import Passwords
from hita.services.users import UserService

STDIN: str = "-"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("user", help="manage users from the server's shell")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a user of any role")
    create.add_argument("--username", required=True)
    create.add_argument("--email", required=True)
    create.add_argument("--full-name", help="default: the username")
    create.add_argument("--password", required=True, help="the password, or - to read stdin")
    create.add_argument("--role", default=Role.USER.value, choices=[r.value for r in Role])
    create.set_defaults(run=run)


def read_password(arg: str) -> str:
    if arg != STDIN:
        return arg
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    return sys.stdin.readline().rstrip("\r\n")


async def _create(config: Config, new: NewUser) -> JsonDict:
    with closing(Passwords(config.auth, workers=1)) as passwords:
        async with open_database(config.database) as database:
            user = await UserService(database, passwords).create_user(Operator(), new)
    await invalidate_user_caches(config, user["id"])
    return user


def run(args: argparse.Namespace, config: Config) -> int:
    body = {
        "username": args.username,
        "email": args.email,
        "full_name": args.full_name or args.username,
        "password": read_password(args.password),
        "role": args.role,
    }
    try:
        new = schemas.load_as(schemas.CREATE_USER, body, NewUser)
    except InvalidInput as exc:
        print(f"hita: {exc}: {json.dumps(exc.details)}", file=sys.stderr)
        return 2
    with servers(config) as resolved:
        user = asyncio.run(_create(resolved, new))
    print(json.dumps(user, indent=2))
    return 0
