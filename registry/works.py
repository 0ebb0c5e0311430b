"""Copyright works and licences: what a rights holder keeps out of generated video, or licenses to chosen accounts.

A work has a kind (character, franchise, brand, artwork, style), a name, aliases in any language, short
descriptions (with their sentence embeddings, computed by the caller: the registry stores bytes and knows no
models), optional reference images (stored as perceptual hashes only), a mode (`opt_out`: blocked for everyone;
`licensed`: allowed only for holders of a licence), validity dates and the rights claim as given.

Every change bumps a registry-wide revision counter in the same transaction and stamps the changed work with it.
The gate's in-memory index is built at some revision and picks up exactly the works changed since (removed works
stay as rows with `removed_at`, so a removal is a change like any other). The counter row is locked by the bump,
so revisions commit in order and a reader that sees revision N sees every change up to N."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, LargeBinary, Text, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from registry.clock import as_utc, utcnow
from registry.errors import Conflict, NotFound


class WorkKind(StrEnum):
    character = "character"
    franchise = "franchise"
    brand = "brand"  # a brand or logo
    artwork = "artwork"
    style = "style"  # an artist's style


class WorkMode(StrEnum):
    opt_out = "opt_out"  # blocked for everyone
    licensed = "licensed"  # allowed only for licensees


class Work(SQLModel, table=True):
    __tablename__ = "works"

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, primary_key=True, max_length=32)
    holder_id: str = Field(foreign_key="accounts.id", index=True, max_length=32)
    kind: str = Field(default=WorkKind.character, max_length=16)
    name: str = Field(index=True, max_length=200)
    mode: str = Field(default=WorkMode.opt_out, max_length=16)
    rights_claim: str = Field(default="", sa_type=Text)
    valid_from: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    valid_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    semantic_threshold: float | None = Field(default=None)  # None: the policy default
    revision: int = Field(default=0, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    removed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class WorkAlias(SQLModel, table=True):
    __tablename__ = "work_aliases"

    id: int | None = Field(default=None, primary_key=True)
    work_id: str = Field(foreign_key="works.id", index=True, max_length=32)
    alias: str = Field(max_length=200)


class WorkDescription(SQLModel, table=True):
    __tablename__ = "work_descriptions"

    id: int | None = Field(default=None, primary_key=True)
    work_id: str = Field(foreign_key="works.id", index=True, max_length=32)
    text: str = Field(sa_type=Text)
    embedding: bytes = Field(sa_type=LargeBinary)  # float32 little-endian, from guard's sentence embedder


class WorkImage(SQLModel, table=True):
    __tablename__ = "work_images"

    id: int | None = Field(default=None, primary_key=True)
    work_id: str = Field(foreign_key="works.id", index=True, max_length=32)
    label: str = Field(max_length=200)  # the file name as uploaded
    sha256: str = Field(max_length=64)
    hashes: str = Field(max_length=64)  # perceptual hashes (hex), from guard's image matcher


class Licence(SQLModel, table=True):
    __tablename__ = "licences"

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, primary_key=True, max_length=32)
    work_id: str = Field(foreign_key="works.id", index=True, max_length=32)
    licensee_id: str = Field(foreign_key="accounts.id", index=True, max_length=32)
    non_commercial: bool = False
    starts_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    ends_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    revoked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class RegistryRevision(SQLModel, table=True):
    __tablename__ = "registry_revisions"

    name: str = Field(primary_key=True, max_length=32)
    value: int = 0


WORKS_REVISION = "works"


@dataclass(frozen=True)
class NewWork:
    holder_id: str
    name: str
    kind: WorkKind = WorkKind.character
    mode: WorkMode = WorkMode.opt_out
    aliases: Sequence[str] = ()
    descriptions: Sequence[tuple[str, bytes]] = ()  # (text, embedding bytes)
    images: Sequence[tuple[str, str, str]] = ()  # (label, sha256, perceptual hashes hex)
    rights_claim: str = ""
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    semantic_threshold: float | None = None


@dataclass(frozen=True)
class WorkRecord:
    """A work with its aliases, descriptions and images, as the gate's index and the API need it."""

    work: Work
    aliases: list[str]
    descriptions: list[tuple[str, bytes]]
    images: list[tuple[str, str, str]]


class Works:
    def __init__(self, session: Session) -> None:
        self.session = session

    # --- the revision counter
    def revision(self) -> int:
        row = self.session.get(RegistryRevision, WORKS_REVISION)
        return row.value if row is not None else 0

    def _bump(self) -> int:
        updated = self.session.execute(
            update(RegistryRevision).where(col(RegistryRevision.name) == WORKS_REVISION)
            .values(value=RegistryRevision.value + 1).returning(RegistryRevision.value)
        ).scalar_one_or_none()
        if updated is None:  # first change ever
            try:
                with self.session.begin_nested():  # a savepoint: a concurrent first change may insert the row too
                    self.session.add(RegistryRevision(name=WORKS_REVISION, value=1))
                return 1
            except IntegrityError:  # it did (and committed): count on from its value
                return self._bump()
        return int(updated)

    def _touch(self, work: Work) -> None:
        work.revision = self._bump()
        work.updated_at = utcnow()
        self.session.add(work)

    # --- works
    def add(self, new: NewWork) -> Work:
        name = new.name.strip()
        if self.session.exec(select(Work).where(Work.holder_id == new.holder_id, Work.name == name,
                                                col(Work.removed_at).is_(None))).first() is not None:
            raise Conflict(f"You already registered a work named {name!r}.",
                           hint="Add aliases to it instead, or remove it first.")
        work = Work(holder_id=new.holder_id, name=name, kind=new.kind, mode=new.mode,
                    rights_claim=new.rights_claim, valid_from=new.valid_from, valid_until=new.valid_until,
                    semantic_threshold=new.semantic_threshold)
        self._touch(work)
        self.session.flush()
        self._add_parts(work, new.aliases, new.descriptions, new.images)
        self.session.flush()
        return work

    def _add_parts(self, work: Work, aliases: Iterable[str], descriptions: Iterable[tuple[str, bytes]],
                   images: Iterable[tuple[str, str, str]]) -> None:
        seen = {alias.casefold() for alias in self.aliases(work.id)}
        for alias in [work.name, *aliases]:
            alias = alias.strip()
            if alias and alias.casefold() not in seen:
                seen.add(alias.casefold())
                self.session.add(WorkAlias(work_id=work.id, alias=alias))
        for text, embedding in descriptions:
            self.session.add(WorkDescription(work_id=work.id, text=text.strip(), embedding=embedding))
        for label, sha256, hashes in images:
            self.session.add(WorkImage(work_id=work.id, label=label, sha256=sha256, hashes=hashes))

    def extend(self, work: Work, *, aliases: Sequence[str] = (), descriptions: Sequence[tuple[str, bytes]] = (),
               images: Sequence[tuple[str, str, str]] = ()) -> Work:
        self._add_parts(work, aliases, descriptions, images)
        self._touch(work)
        self.session.flush()
        return work

    def update(self, work: Work, **changes: object) -> Work:
        for name, value in changes.items():
            if name not in {"kind", "mode", "rights_claim", "valid_from", "valid_until", "semantic_threshold"}:
                raise ValueError(f"a work's {name} cannot be changed this way")
            setattr(work, name, value)
        self._touch(work)
        self.session.flush()
        return work

    def get(self, work_id: str) -> Work:
        work = self.session.get(Work, work_id)
        if work is None or work.removed_at is not None:
            raise NotFound(f"No work with id {work_id!r}.", hint="List works with `hallmark works list`.")
        return work

    def find(self, reference: str, holder_id: str | None = None) -> Work:
        """A live work by id, or by exact name (within a holder's works when given)."""
        work = self.session.get(Work, reference)
        if work is not None and work.removed_at is None and (holder_id is None or work.holder_id == holder_id):
            return work
        query = select(Work).where(Work.name == reference, col(Work.removed_at).is_(None))
        if holder_id is not None:
            query = query.where(Work.holder_id == holder_id)
        found = list(self.session.exec(query))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise Conflict(f"{len(found)} works are named {reference!r}.", hint="Use the work's id.")
        raise NotFound(f"No work {reference!r}.", hint="List works with `hallmark works list`.")

    def list(self, holder_id: str | None = None, *, limit: int = 1000, offset: int = 0) -> list[Work]:
        query = select(Work).where(col(Work.removed_at).is_(None))
        if holder_id is not None:
            query = query.where(Work.holder_id == holder_id)
        return list(self.session.exec(query.order_by(col(Work.created_at), col(Work.id)).offset(offset).limit(limit)))

    def remove(self, work: Work) -> Work:
        work.removed_at = utcnow()
        self._touch(work)
        for licence in self.licences(work.id):
            licence.revoked_at = licence.revoked_at or utcnow()
            self.session.add(licence)
        self.session.flush()
        return work

    def aliases(self, work_id: str) -> list[str]:
        return list(self.session.exec(select(WorkAlias.alias).where(WorkAlias.work_id == work_id)
                                      .order_by(col(WorkAlias.id))))

    def descriptions(self, work_id: str) -> list[str]:
        return list(self.session.exec(select(WorkDescription.text).where(WorkDescription.work_id == work_id)
                                      .order_by(col(WorkDescription.id))))

    def images(self, work_id: str) -> list[WorkImage]:
        return list(self.session.exec(select(WorkImage).where(WorkImage.work_id == work_id)
                                      .order_by(col(WorkImage.id))))

    def by_ids(self, work_ids: Iterable[str]) -> dict[str, Work]:
        ids = list(set(work_ids))
        if not ids:
            return {}
        return {work.id: work for work in self.session.exec(select(Work).where(col(Work.id).in_(ids)))}

    def records(self, *, since: int | None = None) -> list[WorkRecord]:
        """Works with everything the matcher needs: all live works, or (with `since`) every work changed after
        that revision, removed ones included (their lists are empty)."""
        query = select(Work)
        query = query.where(col(Work.removed_at).is_(None)) if since is None else query.where(Work.revision > since)
        works = {work.id: work for work in self.session.exec(query)}
        live = [work_id for work_id, work in works.items() if work.removed_at is None]
        aliases: dict[str, list[str]] = {work_id: [] for work_id in works}
        descriptions: dict[str, list[tuple[str, bytes]]] = {work_id: [] for work_id in works}
        images: dict[str, list[tuple[str, str, str]]] = {work_id: [] for work_id in works}
        for chunk in _chunks(live, 5000):
            for work_id, alias in self.session.exec(
                    select(WorkAlias.work_id, WorkAlias.alias).where(col(WorkAlias.work_id).in_(chunk))):
                aliases[work_id].append(alias)
            for work_id, text, embedding in self.session.exec(
                    select(WorkDescription.work_id, WorkDescription.text, WorkDescription.embedding)
                    .where(col(WorkDescription.work_id).in_(chunk))):
                descriptions[work_id].append((text, bytes(embedding)))
            for work_id, label, sha256, hashes in self.session.exec(
                    select(WorkImage.work_id, WorkImage.label, WorkImage.sha256, WorkImage.hashes)
                    .where(col(WorkImage.work_id).in_(chunk))):
                images[work_id].append((label, sha256, hashes))
        return [WorkRecord(work, aliases[i], descriptions[i], images[i]) for i, work in works.items()]

    # --- licences
    def grant(self, work: Work, licensee_id: str, *, non_commercial: bool = False, starts_at: datetime | None = None,
              ends_at: datetime | None = None) -> Licence:
        if starts_at and ends_at and as_utc(ends_at) <= as_utc(starts_at):
            raise ValueError("a licence must end after it starts")
        licence = Licence(work_id=work.id, licensee_id=licensee_id, non_commercial=non_commercial,
                          starts_at=starts_at, ends_at=ends_at)
        self.session.add(licence)
        self.session.flush()
        return licence

    def licences(self, work_id: str, *, include_revoked: bool = False) -> list[Licence]:
        query = select(Licence).where(Licence.work_id == work_id)
        if not include_revoked:
            query = query.where(col(Licence.revoked_at).is_(None))
        return list(self.session.exec(query.order_by(col(Licence.created_at))))

    def licences_for(self, licensee_id: str, work_ids: Iterable[str]) -> list[Licence]:
        ids = list(set(work_ids))
        if not ids:
            return []
        return list(self.session.exec(select(Licence).where(
            Licence.licensee_id == licensee_id, col(Licence.work_id).in_(ids), col(Licence.revoked_at).is_(None))))

    def licence(self, licence_id: str) -> Licence:
        licence = self.session.get(Licence, licence_id)
        if licence is None or licence.revoked_at is not None:
            raise NotFound(f"No licence with id {licence_id!r}.")
        return licence

    def revoke_licence(self, licence: Licence) -> Licence:
        licence.revoked_at = licence.revoked_at or utcnow()
        self.session.add(licence)
        self.session.flush()
        return licence


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
