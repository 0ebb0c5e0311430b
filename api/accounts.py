"""Accounts and API keys, shared by the HTTP API and the CLI: every change is recorded in the audit log in the same
transaction. Keys are shown once, at creation; afterwards only their public id (the `<id>` in `hm_<id>_<secret>`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from api.context import Hallmark
from guard.errors import InvalidInput
from registry import Account, Accounts, ApiKey, AuditLog, Role
from registry.clock import as_utc
from registry.errors import Conflict, NotFound


@dataclass(frozen=True)
class KeyView:
    id: str
    account: str
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey, account: Account) -> "KeyView":
        return cls(key.id, account.name, as_utc(key.created_at), as_utc(key.revoked_at))


def create_account(hm: Hallmark, actor: Account | None, name: str, role: Role) -> tuple[Account, str]:
    """A new account and its first API key (in clear, for this one answer)."""
    with hm.db.session() as session:
        accounts = Accounts(session)
        account = accounts.create(name, role)
        key = accounts.issue_key(account)
        audit = AuditLog(session)
        audit.append("account.created", actor_id=actor.id if actor else None, subject=account.id, role=role,
                     personal={"name": account.name})
        audit.append("api_key.created", actor_id=actor.id if actor else None, subject=account.id,
                     key_id=_key_id(key))
    return account, key


def issue_key(hm: Hallmark, actor: Account | None, name: str) -> tuple[Account, str]:
    with hm.db.session() as session:
        accounts = Accounts(session)
        account = accounts.require_by_name(name)
        key = accounts.issue_key(account)
        AuditLog(session).append("api_key.created", actor_id=actor.id if actor else None, subject=account.id,
                                 key_id=_key_id(key))
    return account, key


def list_keys(hm: Hallmark, name: str) -> list[KeyView]:
    with hm.db.session() as session:
        accounts = Accounts(session)
        account = accounts.require_by_name(name)
        return [KeyView.of(key, account) for key in accounts.keys(account)]


def revoke_key(hm: Hallmark, actor: Account | None, name: str, key_id: str) -> KeyView:
    """Revoke one of `name`'s keys at once (the next request with it is refused). An admin may revoke anyone's;
    an account its own. Revoking the last admin key that works is refused: nobody could manage the service."""
    with hm.db.session() as session:
        accounts = Accounts(session)
        account = accounts.require_by_name(name)
        if actor is not None and actor.role != Role.admin and actor.id != account.id:
            raise InvalidInput("Only admins may revoke another account's keys.", code="forbidden", status=403)
        key = next((k for k in accounts.keys(account) if k.id == key_id), None)
        if key is None:
            raise NotFound(f"{name} has no API key with id {key_id!r}.",
                           hint=f"List them with `hallmark accounts keys {name}`.")
        if key.revoked_at is None and account.role == Role.admin and _live_admin_keys(accounts) == [key.id]:
            raise Conflict("This is the last working admin key; revoking it would lock everyone out.",
                           hint="Issue another admin key first.")
        already = key.revoked_at is not None
        accounts.revoke_key(key.id)
        if not already:
            AuditLog(session).append("api_key.revoked", actor_id=actor.id if actor else None, subject=account.id,
                                     key_id=key.id)
        return KeyView.of(key, account)


def _live_admin_keys(accounts: Accounts) -> list[str]:
    return [key.id for account in accounts.list() if account.role == Role.admin
            for key in accounts.keys(account) if key.revoked_at is None]


def _key_id(key: str) -> str:
    return key.split("_", 2)[1]
