"""Claims that aiohttp-jwt lets through but we do not."""

from __future__ import annotations

import jwt
import pytest

from hita.config import load_config
from hita.constants import JWT_ALGORITHM
from hita.domain.roles import Role
from hita.domain.users import Principal
from hita.services.tokens import Tokens, principal_from_claims

GOOD = {"sub": "5779356081", "role": "admin", "iat": 1, "exp": 2}


def test_issued_tokens_carry_sub_role_iat_exp() -> None:
    config = load_config({"JWT_TTL_S": "60", "JWT_SECRET": "s" * 32})
    token = Tokens(config.auth).issue("5779356081", Role.ADMIN, now=1000)
    claims = jwt.decode(
        token, config.auth.jwt_secret, algorithms=[JWT_ALGORITHM], options={"verify_exp": False}
    )
    assert claims == {"sub": "5779356081", "role": "admin", "iat": 1000, "exp": 1060}


def test_good_claims_name_the_caller() -> None:
    assert principal_from_claims(GOOD) == Principal(
        "5779356081", Role.ADMIN, "1970-01-01T00:00:01.000000Z"
    )


@pytest.mark.parametrize(
    "claims",
    [{k: v for k, v in GOOD.items() if k != missing} for missing in ("sub", "role", "iat", "exp")]
    + [
        {**GOOD, "sub": "577935608"},
        {**GOOD, "sub": 5779356081},
        {**GOOD, "role": "root"},
        {**GOOD, "role": "Admin"},
        {**GOOD, "role": None},
        {**GOOD, "exp": "2"},
        {**GOOD, "exp": True},
        {**GOOD, "iat": None},
    ],
)
def test_missing_or_malformed_claims_name_nobody(claims: dict[str, object]) -> None:
    assert principal_from_claims(claims) is None
