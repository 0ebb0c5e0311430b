"""Cameos: a person's registered likeness, who may use it, the live challenges that verify it, and every generation
that used or tried to use it (appearances). The face templates themselves live in `registry.faces`, sealed."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, DateTime, delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from registry.clock import as_utc, utcnow
from registry.errors import Conflict, NotFound


class Visibility(StrEnum):
    only_me = "only_me"
    approved = "approved"
    everyone = "everyone"


class CameoStatus(StrEnum):
    pending = "pending"  # registered, waiting for a verified answer to a live challenge
    verified = "verified"  # the person answered a live challenge with their own face
    verified_by_operator = "verified_by_operator"  # an operator enrolled it with consent collected offline
    deleted = "deleted"  # erased at the owner's request: templates gone, the handle stays reserved


VERIFIED = (CameoStatus.verified, CameoStatus.verified_by_operator)


class Cameo(SQLModel, table=True):
    __tablename__ = "cameos"

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, primary_key=True, max_length=32)
    handle: str = Field(index=True, unique=True, max_length=32)
    owner_id: str = Field(foreign_key="accounts.id", index=True, max_length=32)
    visibility: str = Field(default=Visibility.only_me, max_length=16)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    status: str = Field(default=CameoStatus.pending, index=True, max_length=24)
    verified_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    expires_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    deleted_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    # What the owner keeps their likeness out of: {"categories": [...], "terms": [...]}; matched against prompts
    # with the opt-out matcher (phase 2 of the cameo issue).
    content_restrictions: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    # How it was verified (method, frame counts, the operator's evidence); never biometric data.
    verification: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    # Set when an operator enrolled the cameo of a protected person themselves (their own grant).
    protected_person_id: str | None = Field(default=None, foreign_key="protected_persons.id", max_length=32)


class CameoApproval(SQLModel, table=True):
    __tablename__ = "cameo_approvals"

    cameo_id: str = Field(foreign_key="cameos.id", primary_key=True, max_length=32)
    account_id: str = Field(foreign_key="accounts.id", primary_key=True, max_length=32)


class CameoChallenge(SQLModel, table=True):
    """A random order of head movements the person answers on video; valid a few minutes, answered once."""

    __tablename__ = "cameo_challenges"

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, primary_key=True, max_length=32)
    cameo_id: str = Field(foreign_key="cameos.id", index=True, max_length=32)
    moves: list[str] = Field(default_factory=list, sa_type=JSON)
    issued_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    expires_at: datetime = Field(sa_type=DateTime(timezone=True))
    used_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class AppearanceKind(StrEnum):
    mention = "mention"  # the request named the cameo (@handle or the cameos list)
    output = "output"  # the cameo's face was found on the generated frames
    reference_image = "reference_image"  # the cameo's face was found on the request's reference image


class CameoAppearance(SQLModel, table=True):
    """One use or attempted use of a cameo by a generation, written in the same transaction as the decision."""

    __tablename__ = "cameo_appearances"

    seq: int | None = Field(default=None, primary_key=True)
    cameo_id: str = Field(foreign_key="cameos.id", index=True, max_length=32)
    generation_id: str = Field(foreign_key="generations.id", index=True, max_length=32)
    requester_id: str = Field(foreign_key="accounts.id", max_length=32)
    kind: str = Field(max_length=16)
    outcome: str = Field(max_length=16)  # allowed | denied | released | withheld
    reasons: list[str] = Field(default_factory=list, sa_type=JSON)
    similarity: float | None = None
    at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


def normalize_handle(handle: str) -> str:
    return handle.strip().lower().lstrip("@")


class Cameos:
    def __init__(self, session: Session) -> None:
        self.session = session

    def create(self, handle: str, owner_id: str, visibility: Visibility = Visibility.only_me) -> Cameo:
        handle = normalize_handle(handle)
        if self.by_handle(handle) is not None:
            raise Conflict(f"The cameo handle @{handle} is taken.", hint="Pick another handle.")
        cameo = Cameo(handle=handle, owner_id=owner_id, visibility=visibility)
        self.session.add(cameo)
        try:
            self.session.flush()
        except IntegrityError as exc:  # registered by a concurrent request between the check and the insert
            raise Conflict(f"The cameo handle @{handle} is taken.", hint="Pick another handle.") from exc
        return cameo

    def by_handle(self, handle: str) -> Cameo | None:
        return self.session.exec(select(Cameo).where(Cameo.handle == normalize_handle(handle))).first()

    def require_by_handle(self, handle: str) -> Cameo:
        cameo = self.by_handle(handle)
        if cameo is None:
            raise NotFound(f"No cameo @{normalize_handle(handle)}.", hint="List cameos with `hallmark cameo list`.")
        return cameo

    def get(self, cameo_id: str) -> Cameo:
        cameo = self.session.get(Cameo, cameo_id)
        if cameo is None:
            raise NotFound(f"No cameo with id {cameo_id!r}.")
        return cameo

    def handles(self, cameo_ids: list[str]) -> dict[str, str]:
        if not cameo_ids:
            return {}
        rows = self.session.exec(select(Cameo.id, Cameo.handle).where(col(Cameo.id).in_(cameo_ids)))
        return dict(rows.all())

    def for_owner(self, owner_id: str) -> list[Cameo]:
        return list(self.session.exec(
            select(Cameo).where(Cameo.owner_id == owner_id).order_by(col(Cameo.created_at))))

    def list(self) -> list[Cameo]:
        return list(self.session.exec(select(Cameo).order_by(col(Cameo.created_at))))

    @staticmethod
    def is_usable(cameo: Cameo, now: datetime | None = None) -> bool:
        """Verified, not revoked, not deleted, not expired: only then can anyone be granted its likeness."""
        if cameo.status not in VERIFIED or cameo.revoked_at is not None or cameo.deleted_at is not None:
            return False
        return not Cameos.is_expired(cameo, now)

    @staticmethod
    def is_expired(cameo: Cameo, now: datetime | None = None) -> bool:
        """Past the expires_at its owner set (never, when unset)."""
        expires = as_utc(cameo.expires_at)
        return expires is not None and expires <= (now or utcnow())

    def approve(self, cameo: Cameo, account_id: str) -> None:
        if self.session.get(CameoApproval, (cameo.id, account_id)) is None:
            self.session.add(CameoApproval(cameo_id=cameo.id, account_id=account_id))
            self.session.flush()

    def set_approved(self, cameo: Cameo, account_ids: set[str]) -> None:
        """Replace the approved-accounts list."""
        current = self.approved_accounts(cameo.id)
        for gone in current - account_ids:
            self.session.execute(delete(CameoApproval).where(
                col(CameoApproval.cameo_id) == cameo.id, col(CameoApproval.account_id) == gone))
        for new in account_ids - current:
            self.session.add(CameoApproval(cameo_id=cameo.id, account_id=new))
        self.session.flush()

    def approved_accounts(self, cameo_id: str) -> set[str]:
        rows = self.session.exec(select(CameoApproval.account_id).where(CameoApproval.cameo_id == cameo_id))
        return set(rows)

    def touch(self, cameo: Cameo) -> Cameo:
        cameo.updated_at = utcnow()
        self.session.add(cameo)
        self.session.flush()
        return cameo

    def mark_verified(self, cameo: Cameo, status: CameoStatus, verification: dict[str, Any]) -> Cameo:
        cameo.status = status
        cameo.verified_at = utcnow()
        cameo.verification = verification
        return self.touch(cameo)

    def revoke(self, cameo: Cameo) -> Cameo:
        cameo.revoked_at = cameo.revoked_at or utcnow()
        return self.touch(cameo)

    def mark_deleted(self, cameo: Cameo) -> Cameo:
        """The tombstone: revoked, approvals dropped, restrictions cleared. The row stays so the handle is not
        handed to someone else and past records (manifests name cameo ids) still resolve."""
        now = utcnow()
        cameo.status = CameoStatus.deleted
        cameo.deleted_at = cameo.deleted_at or now
        cameo.revoked_at = cameo.revoked_at or now
        cameo.content_restrictions = {}
        self.session.execute(delete(CameoApproval).where(col(CameoApproval.cameo_id) == cameo.id))
        return self.touch(cameo)


class Challenges:
    def __init__(self, session: Session) -> None:
        self.session = session

    def issue(self, cameo: Cameo, moves: list[str], expires_at: datetime) -> CameoChallenge:
        """A new challenge; any older unanswered one of the same cameo stops being answerable."""
        self.close_open(cameo.id)
        challenge = CameoChallenge(cameo_id=cameo.id, moves=list(moves), issued_at=utcnow(), expires_at=expires_at)
        self.session.add(challenge)
        self.session.flush()
        return challenge

    def close_open(self, cameo_id: str) -> None:
        self.session.execute(update(CameoChallenge).where(
            col(CameoChallenge.cameo_id) == cameo_id, col(CameoChallenge.used_at).is_(None)).values(used_at=utcnow()))

    def latest(self, cameo_id: str) -> CameoChallenge | None:
        return self.session.exec(select(CameoChallenge).where(CameoChallenge.cameo_id == cameo_id)
                                 .order_by(col(CameoChallenge.issued_at).desc())).first()

    def get(self, challenge_id: str) -> CameoChallenge | None:
        return self.session.get(CameoChallenge, challenge_id)

    def issued_since(self, since: datetime, *, cameo_id: str | None = None,
                     owner_id: str | None = None) -> list[datetime]:
        """When challenges were issued since `since` for one cameo or for all cameos of one owner, oldest first:
        counted in the database so that a limit holds across API processes."""
        query = select(CameoChallenge.issued_at).where(col(CameoChallenge.issued_at) >= since)
        if cameo_id is not None:
            query = query.where(CameoChallenge.cameo_id == cameo_id)
        if owner_id is not None:
            query = query.join(Cameo, col(Cameo.id) == col(CameoChallenge.cameo_id)).where(Cameo.owner_id == owner_id)
        return [as_utc(at) for at in self.session.exec(query.order_by(col(CameoChallenge.issued_at)))]

    def consume(self, challenge_id: str) -> bool:
        """Mark the challenge answered; False when it already was (a conditional UPDATE: atomic on SQLite and
        PostgreSQL alike, so two uploads racing for one challenge cannot both use it)."""
        result = self.session.execute(update(CameoChallenge).where(
            col(CameoChallenge.id) == challenge_id, col(CameoChallenge.used_at).is_(None)).values(used_at=utcnow()))
        return result.rowcount == 1


class Appearances:
    def __init__(self, session: Session) -> None:
        self.session = session

    def record(self, cameo_id: str, generation_id: str, requester_id: str, kind: AppearanceKind, outcome: str,
               reasons: list[str] | None = None, similarity: float | None = None) -> CameoAppearance:
        row = CameoAppearance(cameo_id=cameo_id, generation_id=generation_id, requester_id=requester_id, kind=kind,
                              outcome=outcome, reasons=list(reasons or []), similarity=similarity)
        self.session.add(row)
        self.session.flush()
        return row

    def for_cameo(self, cameo_id: str) -> list[CameoAppearance]:
        return list(self.session.exec(select(CameoAppearance).where(CameoAppearance.cameo_id == cameo_id)
                                      .order_by(col(CameoAppearance.seq))))

    def exists(self, cameo_id: str, generation_id: str) -> bool:
        return self.session.exec(select(CameoAppearance.seq).where(
            CameoAppearance.cameo_id == cameo_id, CameoAppearance.generation_id == generation_id)).first() is not None
