"""Authentication around aiohttp-jwt's ``JWTMiddleware``, and our role checks.

aiohttp-jwt verifies the signature with the pinned algorithm and skips the
anchored public paths. Its gaps, and how they are closed here:

- it parses the header loosely and answers some bad headers 403 in plain
  text: ``bearer_token`` (its ``token_getter`` hook) parses it ourselves;
- PyJWT checks ``exp`` only when present: ``check_subject`` (its
  ``is_revoked`` hook, built by ``subject_checker``) requires ``exp``, ``iat``, ``sub`` and a known
  ``role``, and that the user still exists, is active and has that role
  (through ``UserService.get_user``, which may be cached; a database outage
  is a 503, never a pass);
- its own errors are plain-text 401/403: every one becomes our JSON 401;
- it lets every OPTIONS request through unverified, and its
  ``check_permissions`` is broken on Python 3.10+ while ``match_any``
  matches substrings (``admin`` in ``superadmin``): role and ownership
  checks are ``require_role`` and ``require_self_or_role`` below.

Requests that matched no route, or a route without their method, pass
untouched: no handler of ours can run for them and they answer 404 or 405.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import jwt
from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware
from aiohttp_jwt import JWTMiddleware

from hita.api.typedefs import Handler
from hita.appkeys import PRINCIPAL, USER_SERVICE
from hita.constants import (
    API_PREFIX,
    JWT_ALGORITHM,
    JWT_TOKEN_TYPE,
    MAX_TOKEN_BYTES,
    VERIFIED_TOKENS_MAX,
)
from hita.domain.ids import is_user_id
from hita.domain.roles import Role
from hita.domain.users import Principal
from hita.errors import NotAuthenticated, PermissionDenied
from hita.services.tokens import principal_from_claims

log = logging.getLogger(__name__)

# Anchored: aiohttp-jwt tests them with re.match against request.path.
PUBLIC_PATHS: Final = (
    r"^/v1\.0/health$",
    r"^/v1\.0/health/live$",
    r"^/v1\.0/auth/login$",
    r"^/v1\.0/cache/health$",
    r"^/v1\.0/cache/console$",  # a page with no data: the data calls need an admin
    r"^/v1\.0/cache/console/[^/]+$",
    r"^/metrics$",
    r"^/v1\.0/openapi\.json$",
)
_PUBLIC_RE: Final = re.compile("|".join(f"(?:{p})" for p in PUBLIC_PATHS))  # one match
# RFC 6750's b64token: what a bearer token may be made of (ASCII only).
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9._~+/-]+=*")
# The route whose data read shares a round trip with the token check's.
USER_DETAILS_PATH: Final = f"{API_PREFIX}/user/{{user_id}}"
_READS: Final = frozenset((hdrs.METH_GET, hdrs.METH_HEAD))


class InvalidToken(NotAuthenticated):
    message = "Invalid or expired token"


def is_public(path: str) -> bool:
    return _PUBLIC_RE.match(path) is not None


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
    with a known token skips the JWT decode. The user check still runs on
    every request: revocation takes effect at once."""

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


async def check_principal(request: web.Request, principal: Principal) -> None:
    """The user still exists, is active and has the token's role (through
    ``UserService.get_user``, which may be cached; a database outage is a 503,
    never a pass); then the caller is recorded for the handlers."""
    then = _user_read_next(request, principal)
    user = await request.app[USER_SERVICE].get_caller(principal.user_id, then=then)
    if (
        user is None
        or not user["is_active"]
        or user["role"] != principal.role.value
        or principal.revoked_by(user)
    ):
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
        verified.put(bearer_token(request), principal, float(expires_at))
        return False

    return check_subject


async def _known_caller(request: web.Request, known_tokens: VerifiedTokens) -> bool:
    """A token verified before: only the user check runs again."""
    if is_public(request.path):
        return False
    principal = known_tokens.get(bearer_token(request))
    if principal is None:
        return False
    await check_principal(request, principal)
    return True


def auth_middleware(secret: str) -> Middleware:
    known_tokens = VerifiedTokens()
    verify = JWTMiddleware(
        secret,
        whitelist=PUBLIC_PATHS,
        token_getter=bearer_token,
        is_revoked=subject_checker(known_tokens),
        algorithms=[JWT_ALGORITHM],
    )

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.http_exception is not None:
            return await handler(request)  # raises the 404 or 405
        if request.method == hdrs.METH_OPTIONS and not is_public(request.path):
            raise NotAuthenticated()  # aiohttp-jwt would wave it through
        if await _known_caller(request, known_tokens):  # verified before
            return await handler(request)
        reached = False

        async def verified(req: web.Request) -> web.StreamResponse:
            nonlocal reached
            reached = True
            return await handler(req)

        try:
            response: web.StreamResponse = await verify(request, verified)
            return response
        except web.HTTPException as exc:
            if reached:
                raise
            log.info("token refused: %s", exc.reason)  # aiohttp-jwt's plain-text answer
            raise InvalidToken() from None
        except jwt.PyJWTError:
            if reached:
                raise
            log.info("token refused by PyJWT", exc_info=True)
            raise InvalidToken() from None

    return authenticate


def principal(request: web.Request) -> Principal:
    try:
        return request[PRINCIPAL]
    except KeyError:
        raise NotAuthenticated() from None


def require_role(request: web.Request, role: Role) -> Principal:
    caller = principal(request)
    if not caller.role.at_least(role):
        raise PermissionDenied()
    return caller


def require_self_or_role(request: web.Request, user_id: str, role: Role) -> Principal:
    caller = principal(request)
    if caller.user_id != user_id and not caller.role.at_least(role):
        raise PermissionDenied()
    return caller
