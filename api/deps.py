"""Request dependencies: the wired application, the caller's account from `Authorization: Bearer <key>`, and the
rate limits (per client address on public endpoints, per account on generations)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.context import Hallmark
from api.problems import ApiProblem
from api.ratelimit import Verdict
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


def _enforce(hm: Hallmark, key: str, limit: int, what: str) -> None:
    if limit <= 0:
        return
    verdict: Verdict = hm.limiter.check(key, limit)
    if not verdict.allowed:
        raise ApiProblem(429, "rate_limited", f"Too many {what}: the limit is {limit} per minute.",
                         hint=f"Retry after {verdict.retry_after} s.",
                         headers={"Retry-After": str(verdict.retry_after), "RateLimit-Limit": str(limit),
                                  "RateLimit-Remaining": "0"})


def public_rate_limit(request: Request, hm: Annotated[Hallmark, Depends(hallmark)]) -> None:
    """Verify and resolution are open to anyone, so they are limited per client address. Behind a proxy, run the
    server with the proxy's address trusted (uvicorn --forwarded-allow-ips) so this is the real client."""
    address = request.client.host if request.client else "unknown"
    _enforce(hm, f"ip:{address}", hm.settings.rate_limit_public_per_minute,
             "verification requests from this address")


def generation_rate_limit(account: Annotated[Account, Depends(current_account)],
                          hm: Annotated[Hallmark, Depends(hallmark)]) -> Account:
    _enforce(hm, f"account:{account.id}", hm.settings.rate_limit_generations_per_minute,
             "generation requests from this account")
    return account


HallmarkDep = Annotated[Hallmark, Depends(hallmark)]
AccountDep = Annotated[Account, Depends(current_account)]
OptionalAccountDep = Annotated[Account | None, Depends(optional_account)]
AdminDep = Annotated[Account, Depends(admin_account)]
GeneratingAccountDep = Annotated[Account, Depends(generation_rate_limit)]
PUBLIC_RATE_LIMIT = Depends(public_rate_limit)
