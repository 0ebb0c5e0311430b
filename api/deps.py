"""Request dependencies: the wired application, the caller's account from `Authorization: Bearer <key>`, and the
rate limits (per client address on public endpoints, per account on generations)."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from api.context import Hallmark
from api.problems import ApiProblem
from api.ratelimit import Verdict
from registry import Account, Accounts, AuditLog, Role
from registry.clock import utcnow

REJECTION_PERIOD_SECONDS = 300.0  # as verify.counted: one entry per account per period, not one per request


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


class RejectionCounter:
    """Generation requests refused by the rate limit, counted per account and logged as one
    `generation.rate_limited` event per account per period (on the first refusal after the period ends, and when
    the server stops). A refusal is a decision the audit log must show, but one entry per refused request would let
    an account grow the log as fast as it can send requests."""

    def __init__(self, period_seconds: float = REJECTION_PERIOD_SECONDS) -> None:
        self.period_seconds = period_seconds
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._since: datetime = utcnow()

    def add(self, hm: Hallmark, account_id: str, limit: int) -> None:
        with self._lock:
            self._counts[account_id] = self._counts.get(account_id, 0) + 1
            due = (utcnow() - self._since).total_seconds() >= self.period_seconds
        if due:
            self.flush(hm, limit)

    def flush(self, hm: Hallmark, limit: int) -> None:
        with self._lock:
            counts, since, until = self._counts, self._since, utcnow()
            self._counts, self._since = {}, until
        if counts:
            with hm.db.session() as session:
                audit = AuditLog(session)
                for account_id, count in sorted(counts.items()):
                    audit.append("generation.rate_limited", actor_id=account_id, count=count, limit_per_minute=limit,
                                 period_start=since.isoformat(), period_end=until.isoformat())


def rejected_generations(app: FastAPI) -> RejectionCounter:
    counter = getattr(app.state, "rejected_generations", None)
    if counter is None:  # one per application (and so per process), made on first use
        counter = app.state.rejected_generations = RejectionCounter()
    return counter


def flush_rejected_generations(app: FastAPI) -> None:
    """Log the counts not yet logged (when the server stops)."""
    counter = getattr(app.state, "rejected_generations", None)
    if counter is not None:
        hm: Hallmark = app.state.hallmark
        counter.flush(hm, hm.settings.rate_limit_generations_per_minute)


def _enforce(hm: Hallmark, key: str, limit: int, what: str, *, refused: RejectionCounter | None = None,
             account_id: str | None = None) -> None:
    if limit <= 0:
        return
    verdict: Verdict = hm.limiter.check(key, limit)
    if not verdict.allowed:
        if refused is not None and account_id is not None:
            refused.add(hm, account_id, limit)
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


def generation_rate_limit(request: Request, account: Annotated[Account, Depends(current_account)],
                          hm: Annotated[Hallmark, Depends(hallmark)]) -> Account:
    """Generation requests are limited per account; each refusal is counted for the audit log."""
    _enforce(hm, f"account:{account.id}", hm.settings.rate_limit_generations_per_minute,
             "generation requests from this account", refused=rejected_generations(request.app),
             account_id=account.id)
    return account


HallmarkDep = Annotated[Hallmark, Depends(hallmark)]
AccountDep = Annotated[Account, Depends(current_account)]
OptionalAccountDep = Annotated[Account | None, Depends(optional_account)]
AdminDep = Annotated[Account, Depends(admin_account)]
GeneratingAccountDep = Annotated[Account, Depends(generation_rate_limit)]
PUBLIC_RATE_LIMIT = Depends(public_rate_limit)
