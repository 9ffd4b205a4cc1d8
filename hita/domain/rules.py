"""Who may do what to whom: the role rules, pure functions that raise.

Route-level checks (is the caller an admin, or the user itself) live in the
HTTP layer; these are the rules that need the target user or the new values.
"""

from __future__ import annotations

from typing import Final

from hita.domain.roles import Role
from hita.domain.users import Actor, Operator, Principal, UserRecord
from hita.errors import BusinessRuleViolation, PermissionDenied

SELF_EDITABLE: Final = frozenset({"full_name", "email", "password"})


def _require_admin(actor: Principal) -> None:
    if not actor.role.at_least(Role.ADMIN):
        raise PermissionDenied()


def check_create(actor: Actor, role: Role) -> None:
    if isinstance(actor, Operator):
        return
    _require_admin(actor)
    if role is Role.SUPERADMIN and actor.role is not Role.SUPERADMIN:
        raise PermissionDenied("Only a superadmin may create a superadmin")


def check_manage(actor: Principal, target: UserRecord) -> None:
    """An admin action on an existing user: update, delete, activate, deactivate."""
    _require_admin(actor)
    if target.role is Role.SUPERADMIN and actor.role is not Role.SUPERADMIN:
        raise PermissionDenied("Only a superadmin may modify a superadmin")


def check_account_change(actor: Principal, target_id: str, target_role: Role) -> None:
    """Points and permissions: an admin's business, and a superadmin's only for a
    superadmin (as for every other change to one). The caller may always act on
    itself where the route allows it (redeeming its own points)."""
    if actor.user_id == target_id:
        return
    _require_admin(actor)
    if target_role is Role.SUPERADMIN and actor.role is not Role.SUPERADMIN:
        raise PermissionDenied("Only a superadmin may modify a superadmin")


def check_update(
    actor: Principal, target: UserRecord, changed: frozenset[str], new_role: Role | None
) -> None:
    is_self = actor.user_id == target.id
    if not actor.role.at_least(Role.ADMIN):
        if not is_self:
            raise PermissionDenied()
        if changed - SELF_EDITABLE:
            raise PermissionDenied("You may change only your full_name, email and password")
        return
    check_manage(actor, target)
    if "role" in changed and new_role is Role.SUPERADMIN and actor.role is not Role.SUPERADMIN:
        raise PermissionDenied("Only a superadmin may promote a user to superadmin")
    if is_self and "role" in changed:
        raise BusinessRuleViolation("You cannot change your own role")
    if is_self and "is_active" in changed:
        raise BusinessRuleViolation("You cannot deactivate yourself")


def check_delete(actor: Principal, target: UserRecord) -> None:
    check_manage(actor, target)
    if actor.user_id == target.id:
        raise BusinessRuleViolation("You cannot delete yourself")


def check_set_active(actor: Principal, target: UserRecord, active: bool) -> None:
    check_manage(actor, target)
    if actor.user_id == target.id and not active:
        raise BusinessRuleViolation("You cannot deactivate yourself")
