"""Face templates (sealed: the registry stores ciphertext it cannot read), protected persons, and the version counter
that tells every process's in-memory face index when to refresh."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import DateTime, LargeBinary, Text, delete, func, text, update
from sqlmodel import Field, Session, SQLModel, col, select

from registry.clock import utcnow
from registry.errors import Conflict, NotFound


class SubjectKind(StrEnum):
    cameo = "cameo"
    protected = "protected"


class FaceTemplate(SQLModel, table=True):
    __tablename__ = "face_templates"

    seq: int | None = Field(default=None, primary_key=True)
    subject_kind: str = Field(max_length=16)
    subject_id: str = Field(index=True, max_length=32)
    key_id: str = Field(max_length=16)  # which face key sealed it
    sealed: bytes = Field(sa_type=LargeBinary)  # AES-GCM ciphertext of the 128-d embedding, bound to the subject
    source: str = Field(default="", max_length=16)  # video | image
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class ProtectedPerson(SQLModel, table=True):
    """A person whose likeness is never generated unless their own verified cameo grants it (public figures and
    the like). The names list and the rule live in policies/; this holds their reference face templates."""

    __tablename__ = "protected_persons"

    id: str = Field(default_factory=lambda: uuid.uuid4().hex, primary_key=True, max_length=32)
    name: str = Field(index=True, unique=True, max_length=200)
    note: str = Field(default="", sa_type=Text)
    created_by: str | None = Field(default=None, foreign_key="accounts.id", max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class FaceIndexState(SQLModel, table=True):
    __tablename__ = "face_index_state"

    id: int = Field(default=1, primary_key=True)
    version: int = 0


class FaceTemplates:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, subject_kind: SubjectKind, subject_id: str, sealed: bytes, key_id: str,
            source: str) -> FaceTemplate:
        row = FaceTemplate(subject_kind=subject_kind, subject_id=subject_id, sealed=sealed, key_id=key_id,
                           source=source)
        self.session.add(row)
        self.session.flush()
        self._bump()
        return row

    def erase(self, subject_kind: SubjectKind, subject_id: str) -> int:
        """Delete a subject's templates. On SQLite, secure_delete overwrites the freed bytes with zeros, so the
        ciphertext does not linger in free pages (PostgreSQL keeps dead tuples until VACUUM)."""
        if self.session.get_bind().dialect.name == "sqlite":
            self.session.execute(text("PRAGMA secure_delete = ON"))
        result = self.session.execute(delete(FaceTemplate).where(
            col(FaceTemplate.subject_kind) == subject_kind, col(FaceTemplate.subject_id) == subject_id))
        if result.rowcount:
            self._bump()
        return result.rowcount

    def count(self, subject_kind: SubjectKind | None = None, subject_id: str | None = None) -> int:
        query = select(func.count()).select_from(FaceTemplate)
        if subject_kind is not None:
            query = query.where(FaceTemplate.subject_kind == subject_kind)
        if subject_id is not None:
            query = query.where(FaceTemplate.subject_id == subject_id)
        return int(self.session.exec(query).one())

    def seqs(self) -> list[int]:
        return list(self.session.exec(select(FaceTemplate.seq)))

    def by_seqs(self, seqs: list[int], chunk: int = 5000) -> list[FaceTemplate]:
        rows: list[FaceTemplate] = []
        for start in range(0, len(seqs), chunk):
            rows += self.session.exec(select(FaceTemplate).where(
                col(FaceTemplate.seq).in_(seqs[start:start + chunk]))).all()
        return rows

    def take_turn(self) -> None:
        """Make this transaction's enrolment wait for any other in progress, until either commits: the face index's
        version row is written now (a row lock on PostgreSQL, the write lock on SQLite), as `add` would write it.
        A check against the enrolled faces made after this sees every enrolment committed before this one."""
        self._bump()

    def version(self) -> int:
        state = self.session.get(FaceIndexState, 1)
        return state.version if state is not None else 0

    def _bump(self) -> None:
        result = self.session.execute(update(FaceIndexState).where(col(FaceIndexState.id) == 1)
                                      .values(version=FaceIndexState.version + 1))
        if result.rowcount == 0:
            self.session.add(FaceIndexState(id=1, version=1))
            self.session.flush()


class ProtectedPersons:
    def __init__(self, session: Session) -> None:
        self.session = session

    def create(self, name: str, note: str = "", created_by: str | None = None) -> ProtectedPerson:
        name = " ".join(name.split())
        if not name:
            raise Conflict("A protected person needs a name.")
        if self.by_name(name) is not None:
            raise Conflict(f"{name!r} is already a protected person.",
                           hint="Remove them first with `hallmark cameo unprotect` to replace their images.")
        person = ProtectedPerson(name=name, note=note, created_by=created_by)
        self.session.add(person)
        self.session.flush()
        return person

    def by_name(self, name: str) -> ProtectedPerson | None:
        return self.session.exec(select(ProtectedPerson).where(ProtectedPerson.name == " ".join(name.split()))).first()

    def require_by_name(self, name: str) -> ProtectedPerson:
        person = self.by_name(name)
        if person is None:
            raise NotFound(f"No protected person named {name!r}.",
                           hint="List them with `hallmark cameo protected`.")
        return person

    def names(self, ids: list[str]) -> dict[str, str]:
        if not ids:
            return {}
        rows = self.session.exec(select(ProtectedPerson.id, ProtectedPerson.name)
                                 .where(col(ProtectedPerson.id).in_(ids)))
        return dict(rows.all())

    def list(self) -> list[ProtectedPerson]:
        return list(self.session.exec(select(ProtectedPerson).order_by(col(ProtectedPerson.name))))

    def delete(self, person: ProtectedPerson) -> None:
        self.session.delete(person)
        self.session.flush()
