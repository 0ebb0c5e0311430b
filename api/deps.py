"""Request dependencies: the wired application, and the caller's account from `Authorization: Bearer <key>`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.context import Hallmark
from api.problems import ApiProblem
from registry import Account, Accounts, Role


def hallmark(request: Request) -> Hallmark:
    return request.app.state.hallmark


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def optional_account(request: Request, hm: Annotated[Hallmark, Depends(hallmark)]) -> Account | None:
    token = _bearer(request)
    if token is None:
        return None
    with hm.db.session() as session:
        account = Accounts(session).authenticate(token)
    if account is None:
        raise ApiProblem(401, "unauthenticated", "The API key is unknown or revoked.",
                         hint="Use a key from `hallmark accounts key NAME`.",
                         headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return account


def current_account(account: Annotated[Account | None, Depends(optional_account)]) -> Account:
    if account is None:
        raise ApiProblem(401, "unauthenticated", "This endpoint needs an API key.",
                         hint="Send `Authorization: Bearer <key>`; `hallmark init` printed the first one.",
                         headers={"WWW-Authenticate": "Bearer"})
    return account


def admin_account(account: Annotated[Account, Depends(current_account)]) -> Account:
    if account.role != Role.admin:
        raise ApiProblem(403, "forbidden", "Only admins may do this.")
    return account


HallmarkDep = Annotated[Hallmark, Depends(hallmark)]
AccountDep = Annotated[Account, Depends(current_account)]
OptionalAccountDep = Annotated[Account | None, Depends(optional_account)]
AdminDep = Annotated[Account, Depends(admin_account)]
