"""Accounts and API keys (admins manage them; anyone can see who they are)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from fastapi import APIRouter

from api.deps import AccountDep, AdminDep, HallmarkDep
from registry import Account, Accounts, AuditLog, Role

router = APIRouter(prefix="/v1", tags=["accounts"])


class AccountCreate(BaseModel):
    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    role: Role = Role.creator


class AccountView(BaseModel):
    id: str
    name: str
    role: str
    created_at: datetime

    @classmethod
    def of(cls, account: Account) -> "AccountView":
        return cls(id=account.id, name=account.name, role=account.role, created_at=account.created_at)


class AccountWithKey(BaseModel):
    account: AccountView
    api_key: str = Field(..., description="Shown once; only its hash is stored.")


@router.get("/me", response_model=AccountView)
def me(account: AccountDep) -> AccountView:
    return AccountView.of(account)


@router.get("/accounts", response_model=list[AccountView])
def list_accounts(hm: HallmarkDep, _: AdminDep) -> list[AccountView]:
    with hm.db.session() as session:
        return [AccountView.of(a) for a in Accounts(session).list()]


@router.post("/accounts", status_code=201, response_model=AccountWithKey)
def create_account(body: AccountCreate, hm: HallmarkDep, admin: AdminDep) -> AccountWithKey:
    with hm.db.session() as session:
        accounts = Accounts(session)
        account = accounts.create(body.name, body.role)
        key = accounts.issue_key(account)
        AuditLog(session).append("account.created", actor_id=admin.id, subject=account.id, role=body.role,
                                 personal={"name": account.name})
        AuditLog(session).append("api_key.created", actor_id=admin.id, subject=account.id)
    return AccountWithKey(account=AccountView.of(account), api_key=key)


@router.post("/accounts/{name}/keys", status_code=201, response_model=AccountWithKey)
def issue_key(name: str, hm: HallmarkDep, admin: AdminDep) -> AccountWithKey:
    with hm.db.session() as session:
        accounts = Accounts(session)
        account = accounts.require_by_name(name)
        key = accounts.issue_key(account)
        AuditLog(session).append("api_key.created", actor_id=admin.id, subject=account.id)
    return AccountWithKey(account=AccountView.of(account), api_key=key)
