"""Accounts and their API keys. Keys are stored as SHA-256 hashes: they are 256-bit random secrets, so a fast hash
is enough (no password stretching needed) and lets a request be authenticated with one indexed lookup."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, select

from registry.clock import utcnow
from registry.errors import Conflict, NotFound


class Role(StrEnum):
    admin = "admin"
    creator = "creator"
    rights_holder = "rights_holder"
    auditor = "auditor"


class Account(SQLModel, table=True):
    __tablename__ = "accounts"

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, primary_key=True, max_length=32)
    name: str = Field(index=True, unique=True, max_length=64)
    role: str = Field(default=Role.creator, max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=16)  # the public prefix shown in the key, e.g. hm_<id>_<secret>
    account_id: str = Field(foreign_key="accounts.id", index=True, max_length=32)
    secret_sha256: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Accounts:
    def __init__(self, session: Session) -> None:
        self.session = session

    def create(self, name: str, role: Role = Role.creator) -> Account:
        if self.by_name(name) is not None:
            raise Conflict(f"An account named {name!r} already exists.", hint="Pick another name.")
        account = Account(name=name, role=role)
        self.session.add(account)
        try:
            self.session.flush()
        except IntegrityError as exc:  # created by a concurrent request between the check and the insert
            raise Conflict(f"An account named {name!r} already exists.", hint="Pick another name.") from exc
        return account

    def get(self, account_id: str) -> Account:
        account = self.session.get(Account, account_id)
        if account is None:
            raise NotFound(f"No account with id {account_id!r}.")
        return account

    def by_name(self, name: str) -> Account | None:
        return self.session.exec(select(Account).where(Account.name == name)).first()

    def require_by_name(self, name: str) -> Account:
        account = self.by_name(name)
        if account is None:
            raise NotFound(f"No account named {name!r}.", hint="List accounts with `hallmark accounts list`.")
        return account

    def list(self) -> list[Account]:
        return list(self.session.exec(select(Account).order_by(Account.created_at)))

    def issue_key(self, account: Account) -> str:
        """Create an API key and return it in clear; only its hash is kept, so this is the only time it is seen."""
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        self.session.add(ApiKey(id=key_id, account_id=account.id, secret_sha256=_hash(secret)))
        self.session.flush()
        return f"hm_{key_id}_{secret}"

    def authenticate(self, presented: str) -> Account | None:
        """The account a presented key belongs to, or None (unknown, malformed or revoked key)."""
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != "hm":
            return None
        key = self.session.get(ApiKey, parts[1])
        if key is None or key.revoked_at is not None:
            return None
        if not secrets.compare_digest(key.secret_sha256, _hash(parts[2])):
            return None
        return self.session.get(Account, key.account_id)

    def keys(self, account: Account) -> list[ApiKey]:
        return list(self.session.exec(select(ApiKey).where(ApiKey.account_id == account.id)
                                      .order_by(ApiKey.created_at)))

    def revoke_key(self, key_id: str) -> ApiKey:
        key = self.session.get(ApiKey, key_id)
        if key is None:
            raise NotFound(f"No API key with id {key_id!r}.")
        key.revoked_at = key.revoked_at or utcnow()
        self.session.add(key)
        return key
