"""Authentication and the route table's access check, around aiohttp-jwt.

``Authenticator.authorize`` runs for every route that is not public (the route
table says which, ``hita.api.route.Access``): the token, then whether the
caller may call the route. A token seen before (``VerifiedTokens``) costs a
lookup and the user check; a new one goes through aiohttp-jwt's
``JWTMiddleware``, which verifies the signature with the pinned algorithm.
Its gaps, and how they are closed here:

- it parses the header loosely and answers some bad headers 403 in plain
  text: ``bearer_token`` (its ``token_getter`` hook) parses it ourselves;
- PyJWT checks ``exp`` only when present: ``check_subject`` (its
  ``is_revoked`` hook, built by ``subject_checker``) requires ``exp``,
  ``iat``, ``sub`` and a known ``role``, and that the user still exists, is active and has that role
  (through ``UserService.caller_view``, which may be cached; a database outage
  is a 503, never a pass);
- its own errors are plain-text 401/403: every one becomes our JSON 401;
- its ``check_permissions`` is broken on Python 3.10+ while ``match_any``
  matches substrings (``admin`` in ``superadmin``): the role check is ours.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import jwt
from aiohttp import hdrs, web
from aiohttp_jwt import JWTMiddleware

from hita.api.route import Access
from hita.api.schemas import user_id_param
from hita.appkeys import PRINCIPAL, USER_SERVICE
from hita.cache.view import NotHeld, View
from hita.constants import (
    API_PREFIX,
    JWT_ALGORITHM,
    JWT_TOKEN_TYPE,
    MAX_TOKEN_BYTES,
    VERIFIED_TOKENS_MAX,
)
from hita.domain.ids import is_user_id
from hita.domain.roles import Role
from hita.domain.typedefs import JsonDict
from hita.domain.users import Principal, Standing
from hita.errors import NotAuthenticated, PermissionDenied
from hita.services.tokens import principal_from_claims

log = logging.getLogger(__name__)

# RFC 6750's b64token: what a bearer token may be made of (ASCII only).
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9._~+/-]+=*")
# The route whose data read shares a round trip with the token check's.
USER_DETAILS_PATH: Final = f"{API_PREFIX}/user/{{user_id}}"
_READS: Final = frozenset((hdrs.METH_GET, hdrs.METH_HEAD))


class InvalidToken(NotAuthenticated):
    message = "Invalid or expired token"


def bearer_token(request: web.Request) -> str:
    """The token of ``Authorization: Bearer <token>``: exactly two parts, the
    scheme in any case, a token of at most ``MAX_TOKEN_BYTES`` made of RFC 6750's
    token characters. aiohttp hands over bytes that are not UTF-8 as lone
    surrogates; such a value is refused here like any other malformed one."""
    headers = request.headers.getall(hdrs.AUTHORIZATION, [])
    if not headers:
        raise NotAuthenticated("Missing authorization token")
    parts = headers[0].split()
    if len(headers) > 1 or len(parts) != 2 or parts[0].lower() != JWT_TOKEN_TYPE.lower():
        raise NotAuthenticated("Invalid authorization header")
    if len(parts[1]) > MAX_TOKEN_BYTES:  # one character is at least one byte
        raise InvalidToken("Token too large")
    if not _TOKEN_RE.fullmatch(parts[1]):
        raise InvalidToken()
    return parts[1]


class VerifiedTokens:
    """Tokens whose signature and claims were verified, with their caller, kept
    until their ``exp`` (bounded, least recently used out first), so a request
    with a known token skips the JWT decode. The key is the whole
    ``Authorization`` value that carried it, so a request that sends the same
    value again skips parsing it too. The user check still runs on every
    request: revocation takes effect at once."""

    def __init__(self, max_entries: int = VERIFIED_TOKENS_MAX) -> None:
        self._max = max_entries
        self._entries: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def get(self, token: str) -> Principal | None:
        found = self._entries.get(token)
        if found is None:
            return None
        principal, expires_at = found
        if time.time() >= expires_at:
            del self._entries[token]
            return None
        self._entries.move_to_end(token)
        return principal

    def put(self, token: str, principal: Principal, expires_at: float) -> None:
        self._entries[token] = (principal, expires_at)
        self._entries.move_to_end(token)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _standing(user: JsonDict | None) -> Standing | None:
    """What a user's tokens may do now: act with its role, if it exists and is
    active, when issued after its password last changed."""
    if user is None or not user["is_active"]:
        return None
    return Standing(user["id"], Role(user["role"]), user.get("password_changed_at") or "")


# The token check's view of a user's details: kept with the entry in L1, so the
# check of a known token is a lookup while the entry lives (hita.cache.view).
CALLER: Final = View("auth:caller", _standing)


async def check_principal(request: web.Request, principal: Principal) -> None:
    """The user still exists, is active and has the token's role (through
    ``UserService.caller_view``, which may be cached; a database outage is a
    503, never a pass); then the caller is recorded for the handlers."""
    if held_check(request, principal):
        return
    then = functools.partial(_user_read_next, request, principal)  # asked on a read only
    users = request.app[USER_SERVICE]
    _admit(request, principal, await users.caller_view(principal.user_id, CALLER, then=then))


def held_check(request: web.Request, principal: Principal) -> bool:
    """``check_principal`` with nothing to wait for, when the caller's standing
    is at hand (``UserService.held_user_view``: kept in L1 with its entry);
    False when it is not, and nothing is decided."""
    standing = request.app[USER_SERVICE].held_user_view(principal.user_id, CALLER)
    if isinstance(standing, NotHeld):
        return False
    _admit(request, principal, standing)
    return True


def _admit(request: web.Request, principal: Principal, standing: Standing | None) -> None:
    if standing is None or not standing.admits(principal):
        raise InvalidToken("Token is no longer valid")
    request[PRINCIPAL] = principal


def _user_read_next(request: web.Request, principal: Principal) -> str | None:
    """The user whose details this request reads once the caller is checked:
    ``GET /v1.0/user/{user_id}`` for a valid id the caller may read."""
    if request.method not in _READS or request.match_info.route.resource is None:
        return None
    if request.match_info.route.resource.canonical != USER_DETAILS_PATH:
        return None
    user_id = request.match_info["user_id"]
    if not is_user_id(user_id):
        return None
    return user_id if principal.role.at_least(Role.ADMIN) or user_id == principal.user_id else None


def subject_checker(verified: VerifiedTokens) -> Callable[..., Awaitable[bool]]:
    async def check_subject(request: web.Request, claims: Mapping[str, object]) -> bool:
        """aiohttp-jwt's ``is_revoked`` hook, called with the verified claims.

        Raises instead of answering True (which would make it answer 403 in
        plain text); on success records the caller and remembers the token."""
        principal = principal_from_claims(claims)
        if principal is None:
            raise InvalidToken()
        await check_principal(request, principal)
        expires_at = claims["exp"]
        assert isinstance(expires_at, int | float)  # principal_from_claims checked it
        # One header, a well-formed bearer token: bearer_token checked it before PyJWT.
        verified.put(request.headers[hdrs.AUTHORIZATION], principal, float(expires_at))
        return False

    return check_subject


async def _passed(request: web.Request) -> web.StreamResponse:
    """What aiohttp-jwt calls once the token is verified: nothing more to do."""
    return _PASSED


_PASSED: Final = web.Response()


class Authenticator:
    """The token of a request, checked; then whether the caller may call the route."""

    def __init__(self, secret: str) -> None:
        self.known = VerifiedTokens()
        self._verify = JWTMiddleware(
            secret,
            token_getter=bearer_token,
            is_revoked=subject_checker(self.known),
            algorithms=[JWT_ALGORITHM],
        )

    async def authorize(self, request: web.Request, access: Access) -> Principal:
        """The caller, if its token is valid (else 401) and ``access`` lets it
        call the route (else 403). For a route the user itself may call, the
        path's user id is checked first (400)."""
        caller = self.known_caller(request) or await self.caller(request)
        return _allowed(request, caller, access)

    def known_authorized(self, request: web.Request, access: Access) -> Principal | None:
        """``authorize`` with nothing to wait for: the caller of a token
        verified before whose standing L1 holds, if ``access`` lets it call the
        route (else 403, as ``authorize``); None: ask ``authorize``."""
        caller = self.known_caller(request)
        return None if caller is None else _allowed(request, caller, access)

    def known_caller(self, request: web.Request) -> Principal | None:
        """The caller of a token verified before whose user check needs no
        wait (``held_check``), recorded for the handlers; None: ask ``caller``."""
        known = self._known(request)
        return known if known is not None and held_check(request, known) else None

    def _known(self, request: web.Request) -> Principal | None:
        """The caller of the request's token if it was verified before."""
        sent = request.headers.getall(hdrs.AUTHORIZATION, ())
        return self.known.get(sent[0]) if len(sent) == 1 else None

    async def caller(self, request: web.Request) -> Principal:
        """The verified caller, recorded for the handlers (``principal``)."""
        known = self._known(request)
        if known is not None:  # verified before: only the user check runs again
            await check_principal(request, known)
            return known
        try:
            await self._verify(request, _passed)
        except web.HTTPException as exc:
            log.info("token refused: %s", exc.reason)  # aiohttp-jwt's plain-text answer
            raise InvalidToken() from None
        except jwt.PyJWTError:
            log.info("token refused by PyJWT", exc_info=True)
            raise InvalidToken() from None
        return principal(request)


def _allowed(request: web.Request, caller: Principal, access: Access) -> Principal:
    assert access.role is not None, "a public route needs no token"
    if caller.role.at_least(access.role):  # asked first: no path to check for most callers
        return caller
    if access.self_allowed and user_id_param(request) == caller.user_id:
        return caller
    raise PermissionDenied()


def principal(request: web.Request) -> Principal:
    """The verified caller of a request whose route is not public."""
    try:
        return request[PRINCIPAL]
    except KeyError:
        raise NotAuthenticated() from None
