"""Cameos as the API and the CLI run them: registration with a live challenge, operator enrollment, protected
persons, permissions, revocation, deletion (templates erased), appearances and withdrawal.

Face templates never leave this layer: views carry counts and statuses, never a vector or a ciphertext."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import math
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, Field, StringConstraints
from sqlmodel import Session, col, select

from api.context import Hallmark
from api.request_body import RequestBody
from api.settings import Settings
from guard.errors import HallmarkError, InvalidInput, MediaError
from guard.gate import Decision, GateRequest, mentioned_handles
from guard.likeness.liveness import Move, instructions, new_challenge
from guard.likeness.output import OutputFinding
from guard.likeness.registration import Failure, check_image, check_video, identity_split, read_image
from guard.likeness.video import analyze_video
from registry import (Account, Accounts, AppearanceKind, Appearances, AuditLog, Cameo, CameoChallenge, Cameos,
                      CameoStatus, Challenges, Conflict, FaceTemplates, Generation, Generations, NotFound,
                      ProtectedPerson, ProtectedPersons, Role, Status, SubjectKind, Visibility)
from registry.clock import as_utc, utcnow

# 2-32 characters; no trailing dot, since a mention drops a trailing dot as the end of a sentence ("ask @ann.").
HANDLE_PATTERN = r"^@?[A-Za-z0-9_][A-Za-z0-9_.]{0,30}[A-Za-z0-9_]$"
MAX_TERM_CHARS = 100  # a restriction term is a word or a short phrase

# How many challenges may be issued in an hour, per cameo and per account (a new registration issues one too):
# HALLMARK_CAMEO_CHALLENGES_PER_HOUR and _PER_ACCOUNT_HOUR. Each challenge allows one upload, so this also caps
# verification attempts. Without a cap, a challenge could be redrawn for free until it asks only for moves some
# pre-recorded footage happens to show.
CHALLENGE_LIMIT_WINDOW = timedelta(hours=1)


class RegistrationRejected(HallmarkError):
    """A registration or enrollment did not pass; `failures` says every reason. Nothing was stored."""

    code = "cameo_verification_failed"
    status = 422

    def __init__(self, failures: list[Failure], *, what: str = "The cameo could not be verified",
                 hint: str = "Fix what the reasons name and try again; a new challenge is needed for each "
                             "attempt.") -> None:
        super().__init__(f"{what}: " + "; ".join(failure.message for failure in failures), hint=hint)
        self.failures = failures


class TooManyChallenges(HallmarkError):
    """The challenge limit of a cameo or an account is reached; `retry_after` says when the next one is free."""

    code = "too_many_challenges"
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        minutes = max(1, math.ceil(retry_after / 60))
        super().__init__(message, hint=f"Try again in {minutes} minute{'s' if minutes > 1 else ''}; film the answer "
                         "right after asking for a challenge, so that each one counts.")
        self.retry_after = retry_after


# --- views (what the API and CLI show; never biometric data) ---------------------------------------------------
Term = Annotated[str, StringConstraints(max_length=MAX_TERM_CHARS)]


class ContentRestrictions(BaseModel):
    categories: list[str] = Field(default_factory=list, max_length=50,
                                  description="Kinds of content the owner's likeness must stay out of "
                                              "(policies/content_categories.toml names them).")
    terms: list[Term] = Field(default_factory=list, max_length=200,
                              description=f"Words or phrases (at most {MAX_TERM_CHARS} characters each) the owner's "
                                          "likeness must not appear with.")


class CameoView(BaseModel):
    id: str
    handle: str
    owner: str
    status: str
    usable: bool
    visibility: str
    approved_accounts: list[str]
    content_restrictions: ContentRestrictions
    expires_at: datetime | None
    created_at: datetime
    verified_at: datetime | None
    revoked_at: datetime | None
    deleted_at: datetime | None
    templates: int = Field(..., description="How many sealed face templates are stored (never their content).")
    verification: dict[str, Any]


class ChallengeView(BaseModel):
    id: str
    moves: list[str]
    instructions: list[str]
    expires_at: datetime


def cameo_view(session: Session, cameo: Cameo) -> CameoView:
    accounts = Accounts(session)
    approved = sorted(accounts.get(account_id).name for account_id in Cameos(session).approved_accounts(cameo.id))
    return CameoView(
        id=cameo.id, handle=cameo.handle, owner=accounts.get(cameo.owner_id).name, status=cameo.status,
        usable=Cameos.is_usable(cameo), visibility=cameo.visibility, approved_accounts=approved,
        content_restrictions=ContentRestrictions(**(cameo.content_restrictions or {})),
        expires_at=as_utc(cameo.expires_at), created_at=as_utc(cameo.created_at),
        verified_at=as_utc(cameo.verified_at), revoked_at=as_utc(cameo.revoked_at),
        deleted_at=as_utc(cameo.deleted_at),
        templates=FaceTemplates(session).count(SubjectKind.cameo, cameo.id),
        verification=cameo.verification or {},
    )


def challenge_view(challenge: CameoChallenge) -> ChallengeView:
    moves = [Move(move) for move in challenge.moves]
    return ChallengeView(id=challenge.id, moves=[str(m) for m in moves], instructions=instructions(moves),
                         expires_at=as_utc(challenge.expires_at))


# --- access ---------------------------------------------------------------------------------------------------
def manageable(session: Session, actor: Account, cameo_id: str) -> Cameo:
    """The cameo if `actor` owns it or is an admin; otherwise the same answer as a missing id (other people's
    cameos are not probed through their ids)."""
    cameo = session.get(Cameo, cameo_id)
    if cameo is None or not _manages(actor, cameo):
        raise NotFound(f"No cameo with id {cameo_id!r}.")
    return cameo


def _manages(actor: Account, cameo: Cameo) -> bool:
    return cameo.owner_id == actor.id or actor.role == Role.admin


def by_ref(session: Session, actor: Account, ref: str) -> Cameo:
    """A cameo by id or @handle (the CLI takes handles). Someone else's cameo gets the same answer as one that does
    not exist, echoing only the caller's own reference: never its id (the handle is public, the id is not)."""
    cameo = session.get(Cameo, ref) or Cameos(session).by_handle(ref)
    if cameo is None or not _manages(actor, cameo):
        raise NotFound(f"You have no cameo {ref[:64]!r}.", hint="List your cameos with `hallmark cameo list` "
                       "(GET /v1/cameos).")
    return cameo


def _require_admin(actor: Account) -> None:
    if actor.role != Role.admin:
        raise HallmarkError("Only admins may do this.", code="forbidden", status=403)


# --- self-service registration --------------------------------------------------------------------------------
def check_handle(handle: str) -> str:
    """The handle as stored (lower case, no @), or InvalidInput naming the rule it breaks. The API checks the same
    pattern on the request body; the CLI and operator enrollment come through here."""
    if not re.fullmatch(HANDLE_PATTERN, handle.strip()):
        raise InvalidInput(f"{handle[:64]!r} is not a cameo handle: 2 to 32 letters, digits, '_' or '.', not ending "
                           "in '.'.", hint="e.g. alice, alice_b or alice.b")
    return handle.strip().lstrip("@").lower()


def _refuse_protected_handle(hm: Hallmark, handle: str) -> None:
    """A handle that policies/protected_persons.toml names as a protected person's own cameo is enrolled by an
    operator only; self-service registration of it is refused (whoever took it first would speak for the person)."""
    for person in hm.policy.persons:
        if person.cameo == handle:
            raise HallmarkError(f"@{handle} is reserved for the cameo of a protected person.", code="handle_reserved",
                                status=409, hint="Pick another handle; the person's own cameo is enrolled by an "
                                "operator (hallmark cameo enroll).")


def _check_challenge_limits(settings: Settings, session: Session, owner_id: str, cameo_id: str | None) -> None:
    """Raise TooManyChallenges when the account, or the cameo, had its hourly share of challenges."""
    now = utcnow()
    since = now - CHALLENGE_LIMIT_WINDOW
    challenges = Challenges(session)
    limits = [(challenges.issued_since(since, owner_id=owner_id), settings.cameo_challenges_per_account_hour,
               "your account")]
    if cameo_id is not None:
        limits.append((challenges.issued_since(since, cameo_id=cameo_id), settings.cameo_challenges_per_hour,
                       "this cameo"))
    for issued, limit, whose in limits:
        if len(issued) >= limit:
            frees_at = issued[len(issued) - limit] + CHALLENGE_LIMIT_WINDOW  # when the oldest one counting expires
            raise TooManyChallenges(f"{limit} challenges were issued for {whose} in the last hour; that is the "
                                    "limit.", retry_after=max(1, math.ceil((frees_at - now).total_seconds())))


def _issue_challenge(hm: Hallmark, session: Session, cameo: Cameo) -> CameoChallenge:
    _check_challenge_limits(hm.settings, session, cameo.owner_id, cameo.id)
    moves = new_challenge([Move(m) for m in hm.settings.cameo_challenge_moves], hm.settings.cameo_challenge_length)
    expires = utcnow() + timedelta(seconds=hm.settings.cameo_challenge_ttl_seconds)
    return Challenges(session).issue(cameo, [str(m) for m in moves], expires)


def start_registration(hm: Hallmark, owner: Account, handle: str,
                       visibility: Visibility = Visibility.only_me) -> tuple[CameoView, ChallengeView]:
    handle = check_handle(handle)
    _refuse_protected_handle(hm, handle)
    with hm.db.session() as session:
        _check_challenge_limits(hm.settings, session, owner.id, None)  # before anything is created
        cameo = Cameos(session).create(handle, owner.id, visibility)
        challenge = _issue_challenge(hm, session, cameo)
        AuditLog(session).append("cameo.registered", actor_id=owner.id, subject=cameo.id, method="challenge",
                                 personal={"handle": cameo.handle})
        return cameo_view(session, cameo), challenge_view(challenge)


def reissue_challenge(hm: Hallmark, actor: Account, cameo_id: str) -> ChallengeView:
    with hm.db.session() as session:
        cameo = manageable(session, actor, cameo_id)
        if cameo.status != CameoStatus.pending:
            raise Conflict(f"@{cameo.handle} is {cameo.status}; only a pending cameo answers a challenge.")
        return challenge_view(_issue_challenge(hm, session, cameo))


def _audit_failures(hm: Hallmark, actor: Account, cameo_id: str | None, failures: list[Failure], event: str,
                    **data: Any) -> None:
    with hm.db.session() as session:
        AuditLog(session).append(event, actor_id=actor.id, subject=cameo_id,
                                 reasons=[failure.code for failure in failures], **data)


def _reject(hm: Hallmark, actor: Account, cameo_id: str | None, failures: list[Failure], event: str,
            **data: Any) -> RegistrationRejected:
    _audit_failures(hm, actor, cameo_id, failures, event, **data)
    return RegistrationRejected(failures)


def verify_registration(hm: Hallmark, actor: Account, cameo_id: str, video: Path,
                        challenge_id: str | None = None,
                        on_progress: Callable[[float], None] | None = None) -> CameoView:
    """Check an uploaded answer to the cameo's live challenge; enroll the face when every check passes.

    The challenge is consumed (committed) before the video is analysed: each challenge gets exactly one attempt,
    whatever its outcome, so a challenge cannot be probed with many uploads."""
    with hm.db.session() as session:
        cameo = manageable(session, actor, cameo_id)
        if cameo.status != CameoStatus.pending:
            raise Conflict(f"@{cameo.handle} is {cameo.status}; only a pending cameo can be verified.",
                           hint="Register a new cameo, or delete this one first.")
        challenges = Challenges(session)
        challenge = challenges.get(challenge_id) if challenge_id else challenges.latest(cameo.id)
        failure = _challenge_failure(challenge, cameo.id)
        if failure is None and not challenges.consume(challenge.id):  # type: ignore[union-attr]
            failure = Failure("challenge_used", "This challenge has already been answered; each challenge is "
                              "valid for one upload.")
        moves = [Move(m) for m in challenge.moves] if challenge is not None else []
        owner_id = cameo.owner_id
    if failure is not None:
        raise _reject(hm, actor, cameo_id, [failure], "cameo.verification_failed")
    max_seconds = hm.settings.cameo_max_video_seconds
    try:
        faces = analyze_video(video, max_seconds=max_seconds, on_progress=on_progress)
    except MediaError as exc:
        raise _reject(hm, actor, cameo_id, [_unsupported(exc)], "cameo.verification_failed") from exc
    verdict = check_video(faces, challenge=moves, threshold=hm.settings.face_match_threshold,
                          max_seconds=max_seconds)
    failures = list(verdict.failures)
    if verdict.template is not None:
        failures += impersonation_failures(hm, [verdict.template], owner_id, reveal=actor.role == Role.admin)
    if failures:
        raise _reject(hm, actor, cameo_id, failures, "cameo.verification_failed", summary=verdict.summary)
    with hm.db.session() as session:
        cameo = manageable(session, actor, cameo_id)
        if cameo.status != CameoStatus.pending:  # verified by a concurrent upload meanwhile
            raise Conflict(f"@{cameo.handle} is already {cameo.status}.")
        failures = _checked_in_turn(hm, session, [verdict.template], owner_id, reveal=actor.role == Role.admin)
        if not failures:
            hm.likeness.enroll(session, SubjectKind.cameo, cameo.id, [verdict.template], source="video")
            Cameos(session).mark_verified(cameo, CameoStatus.verified, {
                "method": "live_challenge", "challenge_id": challenge.id, **verdict.summary})
            AuditLog(session).append("cameo.verified", actor_id=actor.id, subject=cameo.id, method="live_challenge",
                                     templates=1, personal={"handle": cameo.handle})
            return cameo_view(session, cameo)
        session.rollback()  # the turn ends here; the rejection is recorded in a transaction of its own
    raise _reject(hm, actor, cameo_id, failures, "cameo.verification_failed", summary=verdict.summary)


def _challenge_failure(challenge: CameoChallenge | None, cameo_id: str) -> Failure | None:
    if challenge is None or challenge.cameo_id != cameo_id:
        return Failure("no_challenge", "There is no challenge for this cameo to answer.",
                       {"hint": "Ask for one with POST /v1/cameos/{id}/challenge."})
    if challenge.used_at is not None:
        return Failure("challenge_used", "This challenge has already been answered (or replaced by a newer one); "
                       "each challenge is valid for one upload.")
    if as_utc(challenge.expires_at) <= utcnow():
        return Failure("challenge_expired", "This challenge expired at "
                       f"{as_utc(challenge.expires_at):%H:%M:%S} UTC; answer a fresh one within its time.")
    return None


def _unsupported(exc: HallmarkError) -> Failure:
    return Failure("unsupported_file", f"{exc.message} Upload a short video (MP4, MOV, WebM, MKV, AVI or GIF).")


def _checked_in_turn(hm: Hallmark, session: Session, templates: list[np.ndarray], owner_id: str, *, reveal: bool,
                     allow_protected_id: str | None = None) -> list[Failure]:
    """Take this transaction's enrolment turn (FaceTemplates.take_turn: enrolments wait for each other until one
    commits), then check the faces against every other cameo and protected person. Checked only before the turn,
    two accounts verifying the same face at once were both enrolled (2 of 4 runs on SQLite)."""
    FaceTemplates(session).take_turn()
    return impersonation_failures(hm, templates, owner_id, reveal=reveal, allow_protected_id=allow_protected_id)


def impersonation_failures(hm: Hallmark, templates: list[np.ndarray], owner_id: str, *, reveal: bool,
                           allow_protected_id: str | None = None) -> list[Failure]:
    """The face must match no other person's cameo and no protected person. Cameos of the same account are the
    same person (a second handle); `allow_protected_id` is the protected person an operator enrolls in person.
    Self-service callers are not told whose cameo they matched (that would reveal who is registered)."""
    failures: list[Failure] = []
    matches = hm.likeness.match_embeddings(np.stack(templates))
    with hm.db.session() as session:
        owners = {m.subject_id: session.get(Cameo, m.subject_id) for m in matches if m.kind == SubjectKind.cameo}
    seen: set[tuple[str, str]] = set()
    for match in matches:
        if (match.kind, match.subject_id) in seen:
            continue
        seen.add((match.kind, match.subject_id))
        details = {"similarity": round(match.similarity, 3)} | ({"subject": match.label} if reveal else {})
        if match.kind == SubjectKind.cameo:
            other = owners.get(match.subject_id)
            if other is None or other.owner_id == owner_id:
                continue
            failures.append(Failure("matches_existing_cameo", "The face matches another person's registered "
                                    "cameo" + (f" ({match.label})" if reveal else "") + ".", details))
        elif match.subject_id != allow_protected_id:
            failures.append(Failure("matches_protected_person", "The face matches a protected person"
                                    + (f" ({match.label})" if reveal else "") + ".", details))
    return failures


# --- operator enrollment and protected persons ----------------------------------------------------------------
@dataclass
class FaceEvidence:
    templates: list[np.ndarray]
    summary: dict[str, Any]


def faces_from_files(hm: Hallmark, video: Path | None, images: list[Path],
                     on_progress: Callable[[float], None] | None = None, *,
                     what: str = "The cameo could not be enrolled") -> FaceEvidence:
    """Templates from an operator's video (one, from its clear frames) or images (one per image), with the same
    checks as self-service except the live challenge; raises RegistrationRejected listing every failure, led by
    `what` (an operator's enrollment has no challenge to renew, so the hint does not mention one)."""

    def rejected(failures: list[Failure]) -> RegistrationRejected:
        return RegistrationRejected(failures, what=what, hint="Fix what the reasons name and try again.")

    if (video is None) == (not images):
        raise InvalidInput("Give either one video or one or more images.",
                           hint="hallmark cameo enroll ... --video FILE  or  --image A.jpg --image B.jpg")
    threshold = hm.settings.face_match_threshold
    if video is not None:
        max_seconds = hm.settings.cameo_max_video_seconds
        try:
            faces = analyze_video(video, max_seconds=max_seconds, on_progress=on_progress)
        except MediaError as exc:
            raise rejected([_unsupported(exc)]) from exc
        verdict = check_video(faces, challenge=None, threshold=threshold, max_seconds=max_seconds)
        if verdict.failures or verdict.template is None:
            raise rejected(verdict.failures)
        return FaceEvidence([verdict.template], {"method": "operator_video", **verdict.summary})
    templates: list[np.ndarray] = []
    failures: list[Failure] = []
    for path in images:
        embedding, problems = check_image(read_image(path), path.name)
        failures += problems
        if embedding is not None:
            templates.append(embedding)
    if not failures and len(templates) > 1 and identity_split(np.stack(templates)) < threshold:
        failures.append(Failure("identity_changes", "The images do not all show the same person."))
    if failures:
        raise rejected(failures)
    return FaceEvidence(templates, {"method": "operator_images", "images": len(templates)})


def enroll_by_operator(hm: Hallmark, operator: Account, *, handle: str, owner_name: str, video: Path | None,
                       images: list[Path], evidence: str, visibility: Visibility = Visibility.only_me,
                       protected_name: str | None = None,
                       on_progress: Callable[[float], None] | None = None) -> CameoView:
    """A studio's enrollment with consent collected offline: status `verified_by_operator`, the evidence kept
    with the cameo and in the audit log, and the same impersonation check as self-service."""
    _require_admin(operator)
    handle = check_handle(handle)
    if not evidence.strip():
        raise InvalidInput("--evidence must say how consent was collected.",
                           hint='e.g. --evidence "signed release 2026-03-14, ref STU-1182"')
    with hm.db.session() as session:  # fail fast, before the slow face analysis
        owner = Accounts(session).require_by_name(owner_name)
        if Cameos(session).by_handle(handle) is not None:
            raise Conflict(f"The cameo handle @{handle} is taken.", hint="Pick another handle.")
        protected = ProtectedPersons(session).require_by_name(protected_name) if protected_name else None
    try:
        found = faces_from_files(hm, video, images, on_progress)
        with hm.db.session() as session:
            failures = _checked_in_turn(hm, session, found.templates, owner.id, reveal=True,
                                        allow_protected_id=protected.id if protected else None)
            if not failures:
                return _enroll_by_operator(hm, session, operator, handle, owner, protected, visibility, found,
                                           "video" if video is not None else "image", evidence)
            session.rollback()  # the turn ends here; the rejection is recorded in a transaction of its own
        raise RegistrationRejected(failures)
    except RegistrationRejected as exc:  # logged like a failed self-service verification
        _audit_failures(hm, operator, None, exc.failures, "cameo.verification_failed", method="operator",
                        owner_id=owner.id, personal={"handle": handle})
        raise


def _enroll_by_operator(hm: Hallmark, session: Session, operator: Account, handle: str, owner: Account,
                        protected: ProtectedPerson | None, visibility: Visibility, found: FaceEvidence,
                        source: str, evidence: str) -> CameoView:
    """The operator's cameo, its faces and its audit entries, in the caller's transaction (its enrolment turn)."""
    cameo = Cameos(session).create(handle, owner.id, visibility)
    cameo.protected_person_id = protected.id if protected else None
    hm.likeness.enroll(session, SubjectKind.cameo, cameo.id, found.templates, source=source)
    Cameos(session).mark_verified(cameo, CameoStatus.verified_by_operator,
                                  {**found.summary, "evidence": evidence.strip(), "operator": operator.name})
    audit = AuditLog(session)
    audit.append("cameo.registered", actor_id=operator.id, subject=cameo.id, owner_id=owner.id,
                 method="operator", personal={"handle": cameo.handle})
    audit.append("cameo.verified", actor_id=operator.id, subject=cameo.id, method="operator",
                 templates=len(found.templates), personal={"handle": cameo.handle, "evidence": evidence.strip()})
    return cameo_view(session, cameo)


@dataclass
class ProtectedView:
    id: str
    name: str
    note: str
    templates: int
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "note": self.note, "templates": self.templates,
                "created_at": as_utc(self.created_at).isoformat()}


def protected_view(session: Session, person: ProtectedPerson) -> ProtectedView:
    return ProtectedView(person.id, person.name, person.note,
                         FaceTemplates(session).count(SubjectKind.protected, person.id), person.created_at)


def protect(hm: Hallmark, operator: Account, name: str, images: list[Path], note: str = "") -> ProtectedView:
    """Enroll a protected person's reference images; their face is then refused on outputs (and, with phase 2,
    on reference images) unless their own cameo grants it."""
    _require_admin(operator)
    if not images:
        raise InvalidInput("A protected person needs at least one reference image.", hint="--image FILE")
    with hm.db.session() as session:
        if ProtectedPersons(session).by_name(name) is not None:
            raise Conflict(f"{name!r} is already a protected person.",
                           hint="Remove them first with `hallmark cameo unprotect` to replace their images.")
    found = faces_from_files(hm, None, images, what=f"The reference images of {name} were not accepted")
    with hm.db.session() as session:
        person = ProtectedPersons(session).create(name, note, created_by=operator.id)
        hm.likeness.enroll(session, SubjectKind.protected, person.id, found.templates, source="image")
        AuditLog(session).append("protected_person.added", actor_id=operator.id, subject=person.id,
                                 templates=len(found.templates), personal={"name": person.name})
        return protected_view(session, person)


def unprotect(hm: Hallmark, operator: Account, name: str) -> None:
    _require_admin(operator)
    with hm.db.session() as session:
        person = ProtectedPersons(session).require_by_name(name)
        hm.likeness.erase(session, SubjectKind.protected, person.id)
        for linked in session.exec(select(Cameo).where(Cameo.protected_person_id == person.id)).all():
            linked.protected_person_id = None
            session.add(linked)
        session.flush()
        ProtectedPersons(session).delete(person)
        AuditLog(session).append("protected_person.removed", actor_id=operator.id, subject=person.id,
                                 personal={"name": person.name})
    hm.db.checkpoint()


def list_protected(hm: Hallmark) -> list[ProtectedView]:
    with hm.db.session() as session:
        return [protected_view(session, person) for person in ProtectedPersons(session).list()]


# --- permissions, revocation, deletion ------------------------------------------------------------------------
class CameoUpdate(RequestBody):
    """PATCH body: only the fields given change."""

    visibility: Visibility | None = None
    approved_accounts: list[str] | None = Field(None, max_length=1000, description="Account names (replaces).")
    content_restrictions: ContentRestrictions | None = None
    expires_at: datetime | None = Field(None, description="When the cameo stops being usable (null: never).")


def update_permissions(hm: Hallmark, actor: Account, cameo_id: str, update: CameoUpdate) -> CameoView:
    changes = update.model_dump(exclude_unset=True)
    if not changes:
        raise InvalidInput("Nothing to change.", hint="Send visibility, approved_accounts, content_restrictions "
                           "or expires_at.")
    with hm.db.session() as session:
        cameo = manageable(session, actor, cameo_id)
        if cameo.status == CameoStatus.deleted:
            raise Conflict(f"@{cameo.handle} is deleted.")
        cameos = Cameos(session)
        recorded: dict[str, Any] = {}
        if "visibility" in changes and update.visibility is not None:
            cameo.visibility = update.visibility
            recorded["visibility"] = str(update.visibility)
        personal: dict[str, Any] = {}
        if "approved_accounts" in changes:
            accounts = Accounts(session)
            approved = {accounts.require_by_name(name).id for name in update.approved_accounts or []}
            cameos.set_approved(cameo, approved)
            recorded["approved_account_ids"] = sorted(approved)  # ids: names are personal data, the leaf is forever
        if "content_restrictions" in changes:
            restrictions = update.content_restrictions or ContentRestrictions()
            cameo.content_restrictions = {
                "categories": _known_categories(hm, restrictions.categories),
                "terms": sorted({t.strip() for t in restrictions.terms if t.strip()}),
            }
            recorded["restricted_categories"] = cameo.content_restrictions["categories"]
            recorded["restricted_terms"] = len(cameo.content_restrictions["terms"])
            personal["restricted_terms"] = cameo.content_restrictions["terms"]  # free text: erasable
        if "expires_at" in changes:
            expires = _expiry(update.expires_at)
            cameo.expires_at = expires
            recorded["expires_at"] = expires.isoformat() if expires else None
        cameos.touch(cameo)
        AuditLog(session).append("cameo.permissions_changed", actor_id=actor.id, subject=cameo.id,
                                 personal=personal or None, **recorded)
        return cameo_view(session, cameo)


def _known_categories(hm: Hallmark, categories: list[str]) -> list[str]:
    """The categories lower-cased and sorted; one that policies/content_categories.toml does not define is refused
    (it would match only its own name, so a misspelt "nudity" for "sexual" would silently restrict almost nothing)."""
    wanted = sorted({c.strip().lower() for c in categories if c.strip()})
    known = hm.policy.categories
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise InvalidInput(f"Unknown content categor{'y' if len(unknown) == 1 else 'ies'}: "
                           f"{', '.join(repr(c[:40]) for c in unknown)}.",
                           hint=f"Use one of: {', '.join(sorted(known))}; or restrict words with terms.")
    return wanted


def _expiry(value: datetime | None) -> datetime | None:
    """expires_at in UTC; a time without a zone, or one that has no UTC equivalent, is refused."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise InvalidInput("expires_at needs a time zone (e.g. 2027-01-01T00:00:00Z).")
    try:
        return as_utc(value)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 lies before the first representable UTC time
        raise InvalidInput(f"expires_at {value.isoformat()} is out of range.",
                           hint="Give a time between the years 1 and 9999, e.g. 2027-01-01T00:00:00Z.") from None


def revoke(hm: Hallmark, actor: Account, cameo_id: str) -> CameoView:
    """Takes effect at once: the gate refuses new requests, and queued or running generations are withheld at
    release, where consent is checked again."""
    with hm.db.session() as session:
        cameo = manageable(session, actor, cameo_id)
        already = cameo.revoked_at is not None
        Cameos(session).revoke(cameo)
        if not already:
            AuditLog(session).append("cameo.revoked", actor_id=actor.id, subject=cameo.id,
                                     personal={"handle": cameo.handle})
        return cameo_view(session, cameo)


def delete(hm: Hallmark, actor: Account, cameo_id: str) -> None:
    """Erase the face templates and retire the cameo (its row stays as a tombstone: the handle is not reused, and
    manifests that name the cameo id still resolve). Appearances stay for the audit trail."""
    with hm.db.session() as session:
        cameo = manageable(session, actor, cameo_id)
        if cameo.status == CameoStatus.deleted:
            return
        erased = hm.likeness.erase(session, SubjectKind.cameo, cameo.id)
        Challenges(session).close_open(cameo.id)
        Cameos(session).mark_deleted(cameo)
        AuditLog(session).append("cameo.deleted", actor_id=actor.id, subject=cameo.id,
                                 templates_erased=erased, personal={"handle": cameo.handle})
    hm.db.checkpoint()


def take_down(hm: Hallmark, operator: Account, cameo_ref: str, reason: str) -> CameoView:
    """An operator resolves a dispute over a cameo (admin only): e.g. someone registered another person's face from
    public footage. The face templates are erased, so the real person can register theirs; the cameo is retired
    like a deletion (its handle stays reserved), and the reason is kept with it and in the audit log."""
    _require_admin(operator)
    if not reason.strip():
        raise InvalidInput("A take-down needs a reason.", hint='e.g. --reason "face disputed by its owner, ticket 42"')
    with hm.db.session() as session:
        cameo = by_ref(session, operator, cameo_ref)
        if cameo.status == CameoStatus.deleted:
            raise Conflict(f"@{cameo.handle} is already deleted.")
        erased = hm.likeness.erase(session, SubjectKind.cameo, cameo.id)
        Challenges(session).close_open(cameo.id)
        cameo.verification = {**(cameo.verification or {}),
                              "taken_down": {"reason": reason.strip(), "operator": operator.name}}
        Cameos(session).mark_deleted(cameo)
        AuditLog(session).append("cameo.taken_down", actor_id=operator.id, subject=cameo.id, owner_id=cameo.owner_id,
                                 templates_erased=erased, personal={"handle": cameo.handle, "reason": reason.strip()})
        view = cameo_view(session, cameo)
    hm.db.checkpoint()
    return view


def list_cameos(hm: Hallmark, actor: Account, *, everyone: bool = False) -> list[CameoView]:
    with hm.db.session() as session:
        cameos = Cameos(session)
        rows = cameos.list() if everyone and actor.role == Role.admin else cameos.for_owner(actor.id)
        return [cameo_view(session, cameo) for cameo in rows]


def get_cameo(hm: Hallmark, actor: Account, cameo_ref: str) -> CameoView:
    with hm.db.session() as session:
        return cameo_view(session, by_ref(session, actor, cameo_ref))


# --- appearances ----------------------------------------------------------------------------------------------
class AppearanceView(BaseModel):
    generation_id: str
    requester: str
    requested_at: datetime
    status: str = Field(..., description="The generation's status now: denied, queued, ..., completed, withheld, "
                        "withdrawn.")
    how: list[str] = Field(..., description="mention (the request named the cameo), output (its face was found "
                           "on the generated frames).")
    outcomes: list[str] = Field(..., description="What was decided for this cameo, in order: allowed, denied, "
                                "released, withheld.")
    reasons: list[str]
    similarity: float | None = Field(None, description="Best face similarity on the output, when found there.")


def appearances(hm: Hallmark, actor: Account, cameo_id: str) -> list[AppearanceView]:
    """Every generation that used or tried to use the cameo, newest first."""
    with hm.db.session() as session:
        cameo = manageable(session, actor, cameo_id)
        rows = Appearances(session).for_cameo(cameo.id)
        grouped: dict[str, list] = {}
        for row in rows:
            grouped.setdefault(row.generation_id, []).append(row)
        accounts, generations = Accounts(session), Generations(session)
        views = []
        for generation_id, items in grouped.items():
            generation = generations.get(generation_id)
            similarities = [item.similarity for item in items if item.similarity is not None]
            views.append(AppearanceView(
                generation_id=generation_id, requester=accounts.get(generation.requester_id).name,
                requested_at=as_utc(generation.created_at), status=generation.status,
                how=sorted({item.kind for item in items}), outcomes=[item.outcome for item in items],
                reasons=sorted({reason for item in items for reason in item.reasons}),
                similarity=round(max(similarities), 4) if similarities else None,
            ))
    return sorted(views, key=lambda view: view.requested_at, reverse=True)


def withdraw(hm: Hallmark, actor: Account, cameo_id: str, generation_id: str) -> Generation:
    """Withdraw a released clip the cameo appears in: status `withdrawn` (verify reports it so), and the file
    leaves the output store."""
    with hm.db.session() as session:
        cameo = manageable(session, actor, cameo_id)
        if not Appearances(session).exists(cameo.id, generation_id):
            raise NotFound(f"@{cameo.handle} does not appear in generation {generation_id!r}.",
                           hint="List the cameo's appearances to find the generation id.")
        generations = Generations(session)
        generation = generations.get(generation_id)
        if generation.status == Status.withdrawn:
            return generation
        if generation.status != Status.completed:
            raise Conflict(f"Generation {generation_id} is {generation.status}; only a released clip can be "
                           "withdrawn.")
        output = Path(generation.output_path) if generation.output_path else None
        generations.set_status(generation, Status.withdrawn)
        AuditLog(session).append("generation.withdrawn", actor_id=actor.id, subject=generation.id,
                                 cameo_id=cameo.id, personal={"handle": cameo.handle})
    if output is not None:
        output.unlink(missing_ok=True)  # after the commit: a failed commit leaves the clip released and in place
    return generation


# --- appearances written by the generation pipeline (in its transactions) -------------------------------------
def record_mentions(session: Session, generation: Generation, request: GateRequest, decision: Decision,
                    reference_faces: list[OutputFinding] = (),  # type: ignore[assignment]
                    hidden_cameo_ids: frozenset[str] = frozenset()) -> None:
    """At submit: every registered cameo the request names or its reference image shows, allowed or denied, with
    the reasons about it (when none is, the request's reasons). `hidden_cameo_ids`: the cameos the decision's
    anonymous `likeness_without_consent` reasons were made for (api/likeness.py FaceDecision)."""
    cameos = Cameos(session)
    appearances_repo = Appearances(session)
    outcome = "allowed" if decision.allowed else "denied"
    for finding in reference_faces:
        if finding.match.kind != SubjectKind.cameo:
            continue
        reasons = _face_reasons(decision, finding, hidden_cameo_ids)
        appearances_repo.record(finding.match.subject_id, generation.id, generation.requester_id,
                                AppearanceKind.reference_image, outcome, reasons or _request_reasons(decision),
                                similarity=finding.match.similarity)
    for handle in mentioned_handles(request):
        cameo = cameos.by_handle(handle)
        if cameo is None:
            continue
        reasons = [r.code for r in decision.reasons if r.subject == f"@{cameo.handle}"]
        appearances_repo.record(cameo.id, generation.id, generation.requester_id, AppearanceKind.mention,
                                "allowed" if decision.allowed else "denied",
                                reasons or _request_reasons(decision))


def record_release(session: Session, generation: Generation, request: GateRequest, findings: list[OutputFinding],
                   decision: Decision, hidden_cameo_ids: frozenset[str] = frozenset()) -> None:
    """At release: every cameo the request named or the output showed, released or withheld, with the reasons
    about it. `hidden_cameo_ids`: as for record_mentions."""
    cameos = Cameos(session)
    appearances_repo = Appearances(session)
    outcome = "released" if decision.allowed else "withheld"
    seen: set[str] = set()
    for finding in findings:
        if finding.match.kind != SubjectKind.cameo:
            continue
        seen.add(finding.match.subject_id)
        appearances_repo.record(finding.match.subject_id, generation.id, generation.requester_id,
                                AppearanceKind.output, outcome, _face_reasons(decision, finding, hidden_cameo_ids),
                                similarity=finding.match.similarity)
    for handle in mentioned_handles(request):
        cameo = cameos.by_handle(handle)
        if cameo is None or cameo.id in seen:
            continue
        reasons = [r.code for r in decision.reasons if r.subject == f"@{cameo.handle}"]
        appearances_repo.record(cameo.id, generation.id, generation.requester_id, AppearanceKind.mention,
                                outcome, reasons)


WITHOUT_CONSENT = "likeness_without_consent"
# What an owner whose face was allowed reads when the clip was withheld for someone else's likeness only.
ANOTHER_LIKENESS = "another_likeness_withheld"


def _face_reasons(decision: Decision, finding: OutputFinding, hidden_cameo_ids: frozenset[str]) -> list[str]:
    """The reasons about one cameo's face: those naming its handle, and the anonymous `likeness_without_consent`
    only when it was made for this face. That reason names nobody (so that the requester does not learn whose
    face it is); given to every cameo found, it told an owner who had consented that their face was refused."""
    reasons = [r.code for r in decision.reasons if r.subject == finding.match.label]
    if finding.match.subject_id in hidden_cameo_ids and WITHOUT_CONSENT not in reasons:
        reasons.append(WITHOUT_CONSENT)
    if not reasons and not decision.allowed:  # withheld, but not for this face: say so rather than nothing
        reasons = _request_reasons(decision) or [ANOTHER_LIKENESS]
    return reasons


def _request_reasons(decision: Decision) -> list[str]:
    """The request's reasons, for a cameo none of them is about: without the anonymous refusals of other people's
    faces, which the owner would read as being about theirs."""
    return [r.code for r in decision.reasons if not (r.code == WITHOUT_CONSENT and r.subject is None)]


def protected_cameo_links(session: Session, findings: list[OutputFinding]) -> dict[str, str]:
    """Protected person id -> their own cameo's id, for the protected persons found on an output."""
    ids = [f.match.subject_id for f in findings if f.match.kind == SubjectKind.protected]
    if not ids:
        return {}
    rows = session.exec(select(Cameo.protected_person_id, Cameo.id)
                        .where(col(Cameo.protected_person_id).in_(ids))).all()
    return {person_id: cameo_id for person_id, cameo_id in rows if person_id}
