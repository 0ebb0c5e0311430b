"""Registering works and licences, shared by the HTTP API and the CLI: validation, embeddings of descriptions,
perceptual hashes of images, access rules (a rights holder manages its own works, an admin all) and audit."""

from __future__ import annotations

import base64
import binascii
import hashlib
from datetime import datetime
from typing import Any

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlmodel import Session

from api.context import Hallmark
from api.request_body import RequestBody
from guard.errors import InvalidInput
from guard.gate.matching import ImageHashes, embedder, fold, open_image, to_bytes
from guard.gate.matching.text_index import MIN_ALIAS_CHARS, usable_alias
from registry import Account, Accounts, AuditLog, Licence, NewWork, NotFound, Role, Work, WorkKind, WorkMode, Works
from registry.clock import as_utc

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MAX_IMAGES = 10  # per request, JSON or multipart
MAX_IMAGE_PIXELS = 40_000_000


class ImageUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filename: str = Field("image", max_length=200)
    data_base64: str = Field(..., description="The image file, base64-encoded (PNG, JPEG, WebP, GIF, ...).")


class WorkCreate(RequestBody):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=200)
    kind: WorkKind = WorkKind.character
    holder: str | None = Field(None, description="The rights holder's account name (admins only; default: you).")
    aliases: list[str] = Field(default_factory=list, max_length=500, description="Other names, any language.")
    descriptions: list[str] = Field(default_factory=list, max_length=20,
                                    description="Short descriptions, matched against paraphrases.")
    mode: WorkMode = WorkMode.opt_out
    licensees: list[str] = Field(default_factory=list, max_length=500, description="Account names (licensed mode).")
    non_commercial: bool = Field(False, description="The licences given here cover non-commercial use only.")
    licence_starts_at: datetime | None = None
    licence_ends_at: datetime | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    rights_claim: str = Field("", max_length=4000, description="The rights claim, as given.")
    semantic_threshold: float | None = Field(None, ge=0.3, le=0.95)
    images: list[ImageUpload] = Field(default_factory=list, max_length=MAX_IMAGES)

    @field_validator("aliases", "descriptions", "licensees")
    @classmethod
    def _strip(cls, values: list[str]) -> list[str]:
        return [v.strip() for v in values if v.strip()]


class WorkUpdate(RequestBody):
    model_config = ConfigDict(extra="forbid")

    kind: WorkKind | None = None
    mode: WorkMode | None = None
    add_aliases: list[str] = Field(default_factory=list, max_length=500)
    add_descriptions: list[str] = Field(default_factory=list, max_length=20)
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    rights_claim: str | None = Field(None, max_length=4000)
    semantic_threshold: float | None = Field(None, ge=0.3, le=0.95)


class LicenceCreate(RequestBody):
    model_config = ConfigDict(extra="forbid")

    licensee: str = Field(..., min_length=1, max_length=64, description="The licensee's account name.")
    non_commercial: bool = False
    starts_at: datetime | None = None
    ends_at: datetime | None = None


class LicenceView(BaseModel):
    id: str
    work_id: str
    licensee: str
    non_commercial: bool
    starts_at: datetime | None
    ends_at: datetime | None
    created_at: datetime


class WorkView(BaseModel):
    id: str
    name: str
    kind: str
    mode: str
    holder: str
    aliases: list[str]
    descriptions: list[str]
    images: list[dict[str, str]]
    licences: list[LicenceView]
    valid_from: datetime | None
    valid_until: datetime | None
    rights_claim: str
    semantic_threshold: float | None
    created_at: datetime
    updated_at: datetime


# --- access ---------------------------------------------------------------------------------------------------
def may_register(account: Account) -> bool:
    return account.role in (Role.rights_holder, Role.admin)


def require_registrant(account: Account) -> None:
    if not may_register(account):
        raise InvalidInput("Only rights holders and admins register works.", code="forbidden", status=403,
                           hint="Ask an admin for a rights_holder account: `hallmark accounts create NAME "
                                "--role rights_holder`.")


def owned_work(session: Session, account: Account, reference: str) -> Work:
    """A work the account may manage (its own, or any for an admin); others' works are simply not found."""
    works = Works(session)
    work = works.find(reference, None if account.role == Role.admin else account.id)
    return work


# --- views ----------------------------------------------------------------------------------------------------
def licence_view(session: Session, licence: Licence) -> LicenceView:
    licensee = Accounts(session).get(licence.licensee_id)
    return LicenceView(id=licence.id, work_id=licence.work_id, licensee=licensee.name,
                       non_commercial=licence.non_commercial, starts_at=as_utc(licence.starts_at),
                       ends_at=as_utc(licence.ends_at), created_at=as_utc(licence.created_at))


def work_view(session: Session, work: Work) -> WorkView:
    works = Works(session)
    holder = Accounts(session).get(work.holder_id)
    return WorkView(
        id=work.id, name=work.name, kind=work.kind, mode=work.mode, holder=holder.name,
        aliases=works.aliases(work.id), descriptions=works.descriptions(work.id),
        images=[{"label": image.label, "sha256": image.sha256} for image in works.images(work.id)],
        licences=[licence_view(session, l) for l in works.licences(work.id)],
        valid_from=as_utc(work.valid_from), valid_until=as_utc(work.valid_until), rights_claim=work.rights_claim,
        semantic_threshold=work.semantic_threshold, created_at=as_utc(work.created_at),
        updated_at=as_utc(work.updated_at),
    )


# --- inputs ---------------------------------------------------------------------------------------------------
def check_aliases(aliases: list[str]) -> None:
    short = [alias for alias in aliases if not usable_alias(fold(alias))]
    if short:
        raise InvalidInput(f"These aliases are too short to match safely: {sorted(set(short))}.",
                           hint=f"An alias needs at least {MIN_ALIAS_CHARS} letters or digits.")
    too_long = [alias for alias in aliases if len(alias) > 200]
    if too_long:
        raise InvalidInput(f"Aliases are limited to 200 characters: {too_long[0][:40]!r}...")


def check_descriptions(descriptions: list[str]) -> None:
    for description in descriptions:
        if len(description.split()) < 3 or len(description) > 1000:
            raise InvalidInput(f"A description must be 3 words to 1000 characters: {description[:60]!r}.",
                               hint="Describe the work in a sentence, e.g. 'a cheerful cartoon mouse with red "
                                    "shorts and round black ears'.")


def check_dates(start: datetime | None, end: datetime | None, what: str) -> None:
    if start is not None and end is not None and as_utc(end) <= as_utc(start):
        raise InvalidInput(f"The {what} ends before it starts.")


def embed_descriptions(descriptions: list[str]) -> list[tuple[str, bytes]]:
    if not descriptions:
        return []
    vectors = embedder().encode(descriptions)
    return [(text, to_bytes(vector)) for text, vector in zip(descriptions, vectors)]


def hash_image(label: str, data: bytes) -> tuple[str, str, str]:
    image = open_checked_image(label, data)
    return label[:200], hashlib.sha256(data).hexdigest(), ImageHashes.of(image).hex()


def open_checked_image(label: str, data: bytes) -> Image.Image:
    """Decode an uploaded image after the size checks; a bad one is the caller's error (413, 415 or 422)."""
    if not data:
        raise InvalidInput(f"The image {label!r} is empty.")
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidInput(f"The image {label!r} is larger than {MAX_IMAGE_BYTES} bytes.", code="payload_too_large",
                           status=413)
    try:
        image = open_image(data)
    except ValueError as exc:
        raise InvalidInput(f"The image {label!r} is {exc}.", hint="Upload a PNG, JPEG, WebP or GIF file.",
                           code="unsupported_media", status=415) from exc
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise InvalidInput(f"The image {label!r} has more than {MAX_IMAGE_PIXELS} pixels.")
    return image


def decode_base64(label: str, value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"The image {label!r} is not valid base64.") from exc


def _account(session: Session, name: str, what: str) -> Account:
    account = Accounts(session).by_name(name)
    if account is None:
        raise NotFound(f"No account named {name!r} (the {what}).", hint="List accounts with `hallmark accounts list`.")
    return account


# --- operations -----------------------------------------------------------------------------------------------
def register_work(hm: Hallmark, actor: Account, body: WorkCreate,
                  extra_images: list[tuple[str, bytes]] = ()) -> WorkView:  # type: ignore[assignment]
    require_registrant(actor)
    check_aliases([body.name, *body.aliases])
    check_descriptions(body.descriptions)
    check_dates(body.valid_from, body.valid_until, "work's validity")
    check_dates(body.licence_starts_at, body.licence_ends_at, "licence")
    if body.licensees and body.mode != WorkMode.licensed:
        raise InvalidInput("An opt-out work is blocked for everyone and has no licensees.",
                           hint="Use --mode licensed to allow chosen accounts.")
    images = [hash_image(i.filename, decode_base64(i.filename, i.data_base64)) for i in body.images]
    images += [hash_image(label, data) for label, data in extra_images]
    descriptions = embed_descriptions(body.descriptions)  # before the transaction: the model may take seconds
    with hm.db.session() as session:
        if body.holder and body.holder != actor.name:
            if actor.role != Role.admin:
                raise InvalidInput("Only admins register works on behalf of another account.", code="forbidden",
                                   status=403)
            holder = _account(session, body.holder, "holder")
            if not may_register(holder):
                raise InvalidInput(f"The account {holder.name!r} is a {holder.role}, not a rights holder.",
                                   hint="Create a rights holder: `hallmark accounts create NAME --role rights_holder`.")
        else:
            holder = actor
        licensees = [_account(session, name, "licensee") for name in body.licensees]
        works = Works(session)
        work = works.add(NewWork(
            holder_id=holder.id, name=body.name, kind=body.kind, mode=body.mode, aliases=body.aliases,
            descriptions=descriptions, images=images, rights_claim=body.rights_claim, valid_from=body.valid_from,
            valid_until=body.valid_until, semantic_threshold=body.semantic_threshold))
        audit = AuditLog(session)
        audit.append("work.registered", actor_id=actor.id, subject=work.id, name=work.name, mode=work.mode,
                     holder_id=holder.id, aliases=len(works.aliases(work.id)), descriptions=len(descriptions),
                     images=len(images))
        for licensee in licensees:
            licence = works.grant(work, licensee.id, non_commercial=body.non_commercial,
                                  starts_at=body.licence_starts_at, ends_at=body.licence_ends_at)
            audit.append("licence.granted", actor_id=actor.id, subject=work.id, licence_id=licence.id,
                         licensee_id=licensee.id, non_commercial=licence.non_commercial)
        return work_view(session, work)


def update_work(hm: Hallmark, actor: Account, reference: str, body: WorkUpdate) -> WorkView:
    check_aliases(body.add_aliases)
    check_descriptions(body.add_descriptions)
    descriptions = embed_descriptions(body.add_descriptions)
    with hm.db.session() as session:
        works = Works(session)
        work = owned_work(session, actor, reference)
        changes: dict[str, Any] = {k: v for k, v in body.model_dump(
            exclude={"add_aliases", "add_descriptions"}, exclude_unset=True).items()}
        check_dates(changes.get("valid_from", work.valid_from), changes.get("valid_until", work.valid_until),
                    "work's validity")
        if changes:
            works.update(work, **changes)
        if body.add_aliases or descriptions:
            works.extend(work, aliases=body.add_aliases, descriptions=descriptions)
        AuditLog(session).append("work.updated", actor_id=actor.id, subject=work.id, fields=sorted(changes),
                                 added_aliases=len(body.add_aliases), added_descriptions=len(descriptions))
        return work_view(session, work)


def require_owned(hm: Hallmark, actor: Account, reference: str) -> None:
    """Not found unless the actor may manage this work (a cheap check before costly input is read)."""
    with hm.db.session() as session:
        owned_work(session, actor, reference)


def add_images(hm: Hallmark, actor: Account, reference: str, images: list[tuple[str, bytes]]) -> WorkView:
    # add_images checks ownership again in the transaction that writes: the work may have gone since the route's
    # early check.
    hashed = [hash_image(label, data) for label, data in images]
    with hm.db.session() as session:
        work = owned_work(session, actor, reference)
        Works(session).extend(work, images=hashed)
        AuditLog(session).append("work.updated", actor_id=actor.id, subject=work.id, added_images=len(hashed))
        return work_view(session, work)


def remove_work(hm: Hallmark, actor: Account, reference: str) -> Work:
    with hm.db.session() as session:
        work = owned_work(session, actor, reference)
        Works(session).remove(work)
        AuditLog(session).append("work.removed", actor_id=actor.id, subject=work.id, name=work.name)
        return work


def list_works(hm: Hallmark, actor: Account, *, holder: str | None = None, limit: int = 100,
               offset: int = 0) -> list[WorkView]:
    with hm.db.session() as session:
        if actor.role == Role.admin:
            holder_id = _account(session, holder, "holder").id if holder else None
        elif may_register(actor):
            holder_id = actor.id
        else:
            return []
        return [work_view(session, w) for w in Works(session).list(holder_id, limit=limit, offset=offset)]


def grant_licence(hm: Hallmark, actor: Account, reference: str, body: LicenceCreate) -> LicenceView:
    check_dates(body.starts_at, body.ends_at, "licence")
    with hm.db.session() as session:
        work = owned_work(session, actor, reference)
        if work.mode != WorkMode.licensed:
            raise InvalidInput(f"{work.name!r} is opted out for everyone; licences apply to licensed works.",
                               hint="Switch it to licensed first (PATCH mode=licensed).", code="conflict",
                               status=409)
        licensee = _account(session, body.licensee, "licensee")
        works = Works(session)
        licence = works.grant(work, licensee.id, non_commercial=body.non_commercial, starts_at=body.starts_at,
                              ends_at=body.ends_at)
        AuditLog(session).append("licence.granted", actor_id=actor.id, subject=work.id, licence_id=licence.id,
                                 licensee_id=licensee.id, non_commercial=body.non_commercial)
        return licence_view(session, licence)


def revoke_licence(hm: Hallmark, actor: Account, reference: str, licence_id: str) -> None:
    with hm.db.session() as session:
        work = owned_work(session, actor, reference)
        works = Works(session)
        licence = works.licence(licence_id)
        if licence.work_id != work.id:
            raise NotFound(f"No licence with id {licence_id!r} on this work.")
        works.revoke_licence(licence)
        AuditLog(session).append("licence.revoked", actor_id=actor.id, subject=work.id, licence_id=licence.id)
