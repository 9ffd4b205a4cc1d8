"""The role hierarchy and the rules of who may change whom."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hita.domain import rules
from hita.domain.ids import is_user_id, new_user_id
from hita.domain.roles import Role
from hita.domain.users import Operator, Principal, UserChanges, UserRecord
from hita.errors import BusinessRuleViolation, PermissionDenied

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def user(user_id: str, role: Role) -> UserRecord:
    return UserRecord(user_id, "name", "a@b.example", "A B", role, True, 0, NOW, NOW, None)


def actor(role: Role, user_id: str = "1000000001") -> Principal:
    return Principal(user_id, role)


def test_roles_are_ranked_user_admin_superadmin() -> None:
    assert [r.rank for r in (Role.USER, Role.ADMIN, Role.SUPERADMIN)] == [0, 1, 2]
    assert Role.SUPERADMIN.at_least(Role.ADMIN)
    assert Role.ADMIN.at_least(Role.ADMIN)
    assert not Role.ADMIN.at_least(Role.SUPERADMIN)
    assert not Role.USER.at_least(Role.ADMIN)


def test_user_ids_are_random_ten_digit_strings() -> None:
    ids = {new_user_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(is_user_id(i) and i[0] != "0" for i in ids)


@pytest.mark.parametrize(
    "value",
    ["123456789", "12345678901", "12345abcde", "123456789*", "١٢٣٤٥٦٧٨٩٠", "1234567890\n", 1],
)
def test_anything_else_is_not_a_user_id(value: object) -> None:
    assert not is_user_id(value)


@pytest.mark.parametrize(
    ("who", "role", "allowed"),
    [
        (Role.USER, Role.USER, False),
        (Role.ADMIN, Role.USER, True),
        (Role.ADMIN, Role.ADMIN, True),
        (Role.ADMIN, Role.SUPERADMIN, False),
        (Role.SUPERADMIN, Role.SUPERADMIN, True),
    ],
)
def test_only_a_superadmin_creates_a_superadmin(who: Role, role: Role, allowed: bool) -> None:
    if allowed:
        rules.check_create(actor(who), role)
    else:
        with pytest.raises(PermissionDenied):
            rules.check_create(actor(who), role)


def test_the_command_line_operator_creates_any_role() -> None:
    rules.check_create(Operator(), Role.SUPERADMIN)


def test_a_user_changes_only_its_own_name_email_and_password() -> None:
    me = actor(Role.USER)
    target = user(me.user_id, Role.USER)
    rules.check_update(me, target, frozenset({"full_name", "email", "password"}), None)
    for field in ("username", "role", "is_active"):
        with pytest.raises(PermissionDenied):
            rules.check_update(me, target, frozenset({field}), None)
    with pytest.raises(PermissionDenied):
        rules.check_update(me, user("1000000002", Role.USER), frozenset({"full_name"}), None)


def test_unchanged_values_are_not_changes() -> None:
    target = user("1000000001", Role.USER)
    changes = UserChanges(username="name", role=Role.USER, is_active=True, full_name="New")
    assert changes.changed_fields(target) == {"full_name"}
    assert UserChanges(password="x" * 8).changed_fields(target) == {"password"}


def test_an_admin_cannot_promote_to_superadmin_or_touch_one() -> None:
    admin = actor(Role.ADMIN)
    with pytest.raises(PermissionDenied, match="promote"):
        rules.check_update(
            admin, user("1000000002", Role.USER), frozenset({"role"}), Role.SUPERADMIN
        )
    superadmin = user("1000000002", Role.SUPERADMIN)
    with pytest.raises(PermissionDenied, match="superadmin"):
        rules.check_update(admin, superadmin, frozenset({"full_name"}), None)
    with pytest.raises(PermissionDenied):
        rules.check_delete(admin, superadmin)
    with pytest.raises(PermissionDenied):
        rules.check_set_active(admin, superadmin, False)


def test_a_superadmin_promotes_and_manages_superadmins() -> None:
    boss = actor(Role.SUPERADMIN)
    rules.check_update(boss, user("1000000002", Role.ADMIN), frozenset({"role"}), Role.SUPERADMIN)
    rules.check_delete(boss, user("1000000002", Role.SUPERADMIN))


def test_an_admin_may_not_delete_deactivate_or_demote_itself() -> None:
    admin = actor(Role.ADMIN)
    me = user(admin.user_id, Role.ADMIN)
    with pytest.raises(BusinessRuleViolation):
        rules.check_delete(admin, me)
    with pytest.raises(BusinessRuleViolation):
        rules.check_set_active(admin, me, False)
    with pytest.raises(BusinessRuleViolation):
        rules.check_update(admin, me, frozenset({"is_active"}), None)
    with pytest.raises(BusinessRuleViolation):
        rules.check_update(admin, me, frozenset({"role"}), Role.USER)
    rules.check_set_active(admin, me, True)
    rules.check_update(admin, me, frozenset({"full_name", "username"}), None)


@pytest.mark.parametrize(
    ("who", "target_role", "allowed"),
    [
        (Role.ADMIN, Role.USER, True),
        (Role.ADMIN, Role.ADMIN, True),
        (Role.ADMIN, Role.SUPERADMIN, False),
        (Role.SUPERADMIN, Role.SUPERADMIN, True),
        (Role.USER, Role.USER, False),
    ],
)
def test_points_and_permissions_of_a_superadmin_are_a_superadmins_business(
    who: Role, target_role: Role, allowed: bool
) -> None:
    if allowed:
        rules.check_account_change(actor(who), "1000000002", target_role)
    else:
        with pytest.raises(PermissionDenied):
            rules.check_account_change(actor(who), "1000000002", target_role)


def test_anyone_may_change_their_own_account_where_the_route_lets_them() -> None:
    me = actor(Role.USER)
    rules.check_account_change(me, me.user_id, Role.USER)  # redeeming one's own points
