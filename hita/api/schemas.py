"""marshmallow schemas for every body and query string.

Unknown fields are rejected; every message is per field in the 400's
``details``. JSON bodies are strict about types (``true`` is not ``1``, a
number is not a string); query strings are text and are parsed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Final, TypeVar, cast

from aiohttp import web
from marshmallow import Schema, ValidationError, fields, post_load, validate, validates_schema

from hita.constants import CACHE_TYPES
from hita.domain.ids import is_user_id
from hita.domain.points import MAX_POINTS_AMOUNT
from hita.domain.roles import Role
from hita.domain.users import (
    DEFAULT_PAGE_SIZE,
    MAX_LIST_OFFSET_ROWS,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    NewUser,
    UserChanges,
    UserListQuery,
)
from hita.errors import InvalidInput

T = TypeVar("T")

QUERIES_KEPT: Final = 1_024  # distinct query strings whose loaded form is kept
# (schema id, raw query string) -> what it loaded; module-wide, like the schemas
_QUERIES: Final[dict[tuple[int, str], object]] = {}
F = TypeVar("F", bound=fields.Field[Any])

USERNAME_PATTERN: Final = r"\A[A-Za-z0-9_.-]{3,32}\Z"
PERMISSION_PATTERN: Final = r"\A[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+\Z"
MAX_EMAIL_CHARS: Final = 254
MAX_FULL_NAME_CHARS: Final = 100
MIN_PASSWORD_CHARS: Final = 8
MAX_PASSWORD_CHARS: Final = 128
MAX_REASON_CHARS: Final = 200
MAX_PERMISSION_CHARS: Final = 100
MAX_SEARCH_CHARS: Final = 100


# The characters of str.isspace(), spelt so that ECMA 262 reads them as Python does.
SPACE_CHARS: Final = r"\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NO_NUL_PATTERN: Final = r"\A[^\x00]*\Z"
NOT_BLANK_PATTERN: Final = rf"\A[^\x00]*[^\x00{SPACE_CHARS}][^\x00]*\Z"


class Text(fields.String):
    """A string PostgreSQL can store: no NUL character (it would be a 500 there).
    In the document, a ``Text`` without a pattern of its own has ``NO_NUL_PATTERN``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if "\x00" in text:
            raise ValidationError("May not contain NUL characters.")
        return text


class StrictBoolean(fields.Boolean):
    """JSON ``true`` or ``false`` only: no ``1``, no ``"yes"``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class StrictInteger(fields.Integer):
    """A JSON integer only: no ``true``, no ``1.5``, no ``"1"``."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid")
        return value


def _not_blank() -> validate.Regexp:
    """Not only white space (``str.strip`` would leave nothing); no NUL either."""
    return validate.Regexp(NOT_BLANK_PATTERN, error="May not be blank.")


def _username() -> Text:
    return Text(
        validate=validate.Regexp(
            USERNAME_PATTERN, error="3 to 32 letters, digits, dots, dashes or underscores."
        )
    )


def _email() -> fields.Email:
    return fields.Email(validate=validate.Length(max=MAX_EMAIL_CHARS))


def _full_name() -> Text:
    return Text(validate=[validate.Length(min=1, max=MAX_FULL_NAME_CHARS), _not_blank()])


def _password() -> Text:
    return Text(
        load_only=True,
        validate=validate.Length(min=MIN_PASSWORD_CHARS, max=MAX_PASSWORD_CHARS),
    )


def _role() -> fields.Enum[Role]:
    return fields.Enum(Role, by_value=fields.String)


def _require(field: F) -> F:
    field.required = True
    return field


class LoginSchema(Schema):
    username = Text(required=True, validate=validate.Length(min=1, max=64))
    password = Text(
        required=True, load_only=True, validate=validate.Length(min=1, max=MAX_PASSWORD_CHARS)
    )


class CreateUserSchema(Schema):
    username = _require(_username())
    email = _require(_email())
    full_name = _require(_full_name())
    password = _require(_password())
    role = fields.Enum(Role, by_value=fields.String, load_default=Role.USER)
    is_active = StrictBoolean(load_default=True)

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> NewUser:
        return NewUser(**data)


class PatchUserSchema(Schema):
    """PATCH: any of the updatable fields, at least one (``minProperties`` in the document)."""

    MIN_PROPERTIES: ClassVar[int] = 1

    username = _username()
    email = _email()
    full_name = _full_name()
    password = _password()
    role = _role()
    is_active = StrictBoolean()

    @validates_schema
    def not_empty(self, data: dict[str, Any], **kwargs: Any) -> None:
        if len(data) < self.MIN_PROPERTIES:
            raise ValidationError("Give at least one field to change.")

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> UserChanges:
        return UserChanges(**data)


class PutUserSchema(PatchUserSchema):
    """PUT: the whole updatable record; ``password`` (write-only) stays optional."""

    username = _require(_username())
    email = _require(_email())
    full_name = _require(_full_name())
    role = _require(_role())
    is_active = StrictBoolean(required=True)


class PointsSchema(Schema):
    amount = StrictInteger(required=True, validate=validate.Range(min=1, max=MAX_POINTS_AMOUNT))
    reason = Text(
        required=True, validate=[validate.Length(min=1, max=MAX_REASON_CHARS), _not_blank()]
    )


class PermissionSchema(Schema):
    permission = Text(
        required=True,
        validate=[
            validate.Length(max=MAX_PERMISSION_CHARS),
            validate.Regexp(
                PERMISSION_PATTERN, error="A dotted lower-case name such as reservations.write."
            ),
        ],
    )


class PageQuerySchema(Schema):
    """``page`` is at most ``MAX_PAGE`` whatever the page size, so that no page
    starts more than ``MAX_LIST_OFFSET_ROWS`` rows deep."""

    page = fields.Integer(
        load_default=1,
        validate=validate.Range(
            min=1,
            max=MAX_PAGE,
            error=f"From 1 to {MAX_PAGE}: pages may start at most {MAX_LIST_OFFSET_ROWS} "
            "rows deep; narrow the filters.",
        ),
    )
    page_size = fields.Integer(
        load_default=DEFAULT_PAGE_SIZE, validate=validate.Range(min=1, max=MAX_PAGE_SIZE)
    )


class UserListQuerySchema(PageQuerySchema):
    role = fields.Enum(
        Role,
        by_value=fields.String,
        validate=validate.OneOf(
            [Role.USER, Role.ADMIN], error="user or admin (superadmins: /v1.0/superadmin/users)."
        ),
    )
    is_active = fields.Boolean(truthy={"true"}, falsy={"false"})
    search = Text(validate=[validate.Length(min=1, max=MAX_SEARCH_CHARS), _not_blank()])

    @post_load
    def make(self, data: dict[str, Any], **kwargs: Any) -> UserListQuery:
        return UserListQuery(**data)


class CacheClearQuerySchema(Schema):
    family = fields.String(validate=validate.OneOf(CACHE_TYPES))


LOGIN: Final = LoginSchema()
CREATE_USER: Final = CreateUserSchema()
PUT_USER: Final = PutUserSchema()
PATCH_USER: Final = PatchUserSchema()
POINTS: Final = PointsSchema()
PERMISSION: Final = PermissionSchema()
PAGE_QUERY: Final = PageQuerySchema()
USER_LIST_QUERY: Final = UserListQuerySchema()
CACHE_CLEAR_QUERY: Final = CacheClearQuerySchema()


def load(schema: Schema, data: Mapping[str, Any]) -> Any:
    """``schema.load(data)``, with failures as our 400 and their per-field messages."""
    try:
        return schema.load(data)
    except ValidationError as exc:
        messages = exc.messages
        details = messages if isinstance(messages, dict) else {"_schema": messages}
        raise InvalidInput("Invalid input", details=details) from None


def load_as(schema: Schema, data: Mapping[str, Any], kind: type[T]) -> T:
    result = load(schema, data)
    assert isinstance(result, kind), f"{type(schema).__name__} must load a {kind.__name__}"
    return result


def query_as(request: web.Request, schema: Schema, kind: type[T]) -> T:
    """The query string loaded by ``schema`` (``load_as``), once per distinct
    query string: a cached read comes back with the same string again and again.
    What is kept is shared: a frozen dataclass as it is, a dict as a copy."""
    key = (id(schema), request.rel_url.raw_query_string)
    found = _QUERIES.get(key)
    if found is None:
        found = load_as(schema, query_params(request), kind)
        if len(_QUERIES) >= QUERIES_KEPT:
            _QUERIES.clear()
        _QUERIES[key] = found
    return cast(T, dict(found) if isinstance(found, dict) else found)


def query_params(request: web.Request) -> dict[str, str]:
    """The query string as a mapping; a parameter given twice is a 400."""
    query = request.query
    repeated = sorted({key for key in query if len(query.getall(key)) > 1})
    if repeated:
        raise InvalidInput(
            "Invalid input", details={key: ["Give this parameter once."] for key in repeated}
        )
    return dict(query)


IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"
IDEMPOTENCY_KEY_PATTERN: Final = r"\A[A-Za-z0-9._:-]{1,128}\Z"
_IDEMPOTENCY_KEY_RE: Final = re.compile(IDEMPOTENCY_KEY_PATTERN)
_IDEMPOTENCY_KEY_RULE: Final = (
    "Give it once: 1 to 128 letters, digits, '.', '_', ':' or '-' (a UUID, say),"
    " bare or in double quotes."
)


def idempotency_key(request: web.Request) -> str | None:
    """The client's ``Idempotency-Key`` (bare or as a quoted string, as the
    IETF draft writes it), checked; None when there is none."""
    values = request.headers.getall(IDEMPOTENCY_KEY_HEADER, [])
    if not values:
        return None
    key = values[0]
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if len(values) > 1 or not _IDEMPOTENCY_KEY_RE.match(key):
        raise InvalidInput(
            "Invalid Idempotency-Key", details={IDEMPOTENCY_KEY_HEADER: [_IDEMPOTENCY_KEY_RULE]}
        )
    return key


def user_id_param(request: web.Request) -> str:
    """The ``{user_id}`` of the path, checked before anything uses it."""
    user_id = request.match_info["user_id"]
    if not is_user_id(user_id):
        raise InvalidInput("Invalid user id", details={"user_id": ["Must be a 10-digit user id."]})
    return user_id
