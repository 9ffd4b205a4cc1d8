"""``AuthService``: login with a username and password, for an access token."""

from __future__ import annotations

from dataclasses import dataclass, field

from hita.constants import JWT_TOKEN_TYPE
from hita.db.database import Database, note_committed
from hita.db.users import UsersRepository
from hita.domain.typedefs import JsonDict
from hita.errors import NotAuthenticated, PermissionDenied
from hita.services.login_throttle import LoginThrottle
from hita.services.passwords import Passwords
from hita.services.tokens import Tokens


@dataclass(frozen=True, slots=True)
class Login:
    user_id: str
    token: JsonDict = field(repr=False)


class InvalidCredentials(NotAuthenticated):
    message = "Invalid username or password"


class AccountDeactivated(PermissionDenied):
    message = "This account is deactivated"


class AuthService:
    def __init__(
        self,
        database: Database,
        passwords: Passwords,
        tokens: Tokens,
        throttle: LoginThrottle | None = None,
    ) -> None:
        self._db = database
        self._passwords = passwords
        self._tokens = tokens
        self._throttle = throttle

    async def login(self, username: str, password: str, address: str = "") -> Login:
        """The user's id, and ``{"access_token", "token_type": "Bearer", "expires_in"}``.

        An unknown username costs as much time as a wrong password (the password
        is checked against a dummy hash), and both get the same answer; an
        inactive user learns so only with the right password. With a throttle,
        every attempt is counted first, and one past the limit for the username
        or for ``address`` is a ``LoginThrottled`` before any password is checked."""
        counted = (
            None if self._throttle is None else await self._throttle.attempt(username, address)
        )
        repo = UsersRepository(self._db)
        credentials = await repo.credentials(username)
        stored = None if credentials is None else credentials.password_hash
        matches = await self._passwords.verify(stored, password)  # always: same time
        if credentials is None or not matches:
            raise InvalidCredentials()
        if self._throttle is not None:
            await self._throttle.succeeded(counted)
        if not credentials.is_active:
            raise AccountDeactivated()
        rehash = None
        if self._passwords.needs_rehash(credentials.password_hash):
            rehash = await self._passwords.hash(password)
        xid = await repo.record_login(credentials.user_id, rehash)
        if xid is not None:
            note_committed(xid)
        return Login(
            credentials.user_id,
            {
                "access_token": self._tokens.issue(credentials.user_id, credentials.role),
                "token_type": JWT_TOKEN_TYPE,
                "expires_in": self._tokens.ttl_s,
            },
        )
