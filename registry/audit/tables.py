"""The audit log's tables.

    audit_pending      events appended by callers, in their own transactions, waiting to be sequenced
    audit_tree_head    one row: the tree size and its right edge; locking it is what sequences the log
    audit_entries      the sequenced log: index -> exact leaf bytes (plus kind/time/subject for queries)
    audit_nodes        every complete subtree hash, leaves included, keyed by flat index: proofs read O(log n) rows
    audit_personal     the erasable personal data of an entry (values and salts of its leaf's commitments)
    audit_checkpoints  every signed checkpoint the log has issued
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, ForeignKey, Integer, LargeBinary, Text
from sqlmodel import Field, SQLModel

from registry.clock import utcnow

# BIGINT on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the auto-assigned rowid.
_BIG_ID = BigInteger().with_variant(Integer(), "sqlite")


class AuditPending(SQLModel, table=True):
    __tablename__ = "audit_pending"

    id: int | None = Field(default=None, sa_column=Column(_BIG_ID, primary_key=True, autoincrement=True))
    at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
    kind: str = Field(max_length=64)
    actor_id: str | None = Field(default=None, max_length=32)
    subject: str | None = Field(default=None, max_length=64)
    # the canonical leaf around its index (leaf.leaf_parts): sequencing only splices the index in
    leaf_head: bytes = Field(sa_type=LargeBinary)
    leaf_tail: bytes = Field(sa_type=LargeBinary)
    # {field: {"salt": base64, "value": ...}}; the leaf holds only the commitments
    personal: dict[str, Any] | None = Field(default=None, sa_type=JSON)


class AuditTreeHead(SQLModel, table=True):
    __tablename__ = "audit_tree_head"

    id: int = Field(default=1, primary_key=True)
    size: int = Field(default=0, sa_type=BigInteger)
    frontier: bytes = Field(default=b"", sa_type=LargeBinary)  # see merkle.Frontier
    updated_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_entries"

    leaf_index: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    at: datetime = Field(sa_type=DateTime(timezone=True), index=True)
    kind: str = Field(max_length=64)
    actor_id: str | None = Field(default=None, max_length=32, index=True)
    subject: str | None = Field(default=None, max_length=64, index=True)
    leaf: bytes = Field(sa_type=LargeBinary)


class AuditNode(SQLModel, table=True):
    __tablename__ = "audit_nodes"

    # merkle.flat_index(level, position); on SQLite the rowid itself, so the table is its own index
    id: int = Field(sa_column=Column(_BIG_ID, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_type=LargeBinary)


class AuditPersonal(SQLModel, table=True):
    __tablename__ = "audit_personal"

    leaf_index: int = Field(sa_column=Column(BigInteger, ForeignKey("audit_entries.leaf_index"),
                                             primary_key=True, autoincrement=False))
    fields: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)  # {field: {"salt": b64, "value": ...}}


class AuditCheckpoint(SQLModel, table=True):
    __tablename__ = "audit_checkpoints"

    id: int | None = Field(default=None, sa_column=Column(_BIG_ID, primary_key=True, autoincrement=True))
    size: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    root_hash: bytes = Field(sa_type=LargeBinary)
    note: str = Field(sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=DateTime(timezone=True))
