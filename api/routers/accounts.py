"""Accounts and API keys (admins manage them; anyone can see who they are)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from fastapi import APIRouter

from api.deps import AccountDep, AdminDep, HallmarkDep
from api import accounts as service
from api.problems import ApiProblem
from api.request_body import RequestBody
from registry import Account, Accounts, Role

router = APIRouter(prefix="/v1", tags=["accounts"])


class AccountCreate(RequestBody):
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
    account, key = service.create_account(hm, admin, body.name, body.role)
    return AccountWithKey(account=AccountView.of(account), api_key=key)


@router.post("/accounts/{name}/keys", status_code=201, response_model=AccountWithKey)
def issue_key(name: str, hm: HallmarkDep, admin: AdminDep) -> AccountWithKey:
    account, key = service.issue_key(hm, admin, name)
    return AccountWithKey(account=AccountView.of(account), api_key=key)


class KeyView(BaseModel):
    id: str = Field(..., description="The public id: the <id> in hm_<id>_<secret>.")
    account: str
    created_at: datetime
    revoked_at: datetime | None


@router.get("/accounts/{name}/keys", response_model=list[KeyView])
def list_keys(name: str, hm: HallmarkDep, account: AccountDep) -> list[KeyView]:
    """An account's API keys (never their secrets): admins see anyone's, an account its own."""
    if account.role != Role.admin and account.name != name:
        raise ApiProblem(403, "forbidden", "Only admins may list another account's keys.")
    return [KeyView(**view.__dict__) for view in service.list_keys(hm, name)]


@router.delete("/accounts/{name}/keys/{key_id}", response_model=KeyView)
def revoke_key(name: str, key_id: str, hm: HallmarkDep, account: AccountDep) -> KeyView:
    """Revoke a key at once (admins: anyone's; an account: its own). The last working admin key cannot be revoked."""
    return KeyView(**service.revoke_key(hm, account, name, key_id).__dict__)
