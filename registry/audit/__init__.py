"""The audit log: an RFC 6962 Merkle tree over canonical event leaves, with signed checkpoints, proofs and
erasable personal data. `AuditLog(session).append(...)` records an event in the caller's transaction;
`AuditTree(engine)` sequences events and serves the tree. `merkle`, `leaf`, `checkpoint` and `export` are pure
(no database), so `hallmark audit verify` checks an export with them alone."""

from registry.audit.log import AuditEvent, AuditLog, InvalidAuditEvent
from registry.audit.tables import (
    AuditCheckpoint,
    AuditEntry,
    AuditNode,
    AuditPending,
    AuditPersonal,
    AuditTreeHead,
)
from registry.audit.tree import AuditRangeError, AuditTree, LoggedEntry

__all__ = [
    "AuditCheckpoint", "AuditEntry", "AuditEvent", "AuditLog", "AuditNode", "AuditPending", "AuditPersonal",
    "AuditRangeError", "AuditTree", "AuditTreeHead", "InvalidAuditEvent", "LoggedEntry",
]
