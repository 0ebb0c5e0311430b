"""The sequenced log: integrating pending events into the Merkle tree, and reading entries, proofs and checkpoints.

Sequencing. Callers append events to `audit_pending` inside their own transactions (many at once, no shared
lock, so an append costs one INSERT; the canonical leaf is built then, around a gap for its index). An
integrator then takes the single `audit_tree_head` row's lock — `SELECT ... FOR UPDATE` on PostgreSQL,
`BEGIN IMMEDIATE` (the database write lock) on SQLite — and, under it, gives the waiting events the next indexes
in one batch: it splices each index into its leaf, extends the tree's right edge (one hash per completed
subtree, amortized one per leaf), stores the new entries and complete-subtree nodes, deletes the pending rows and
moves the head, all in one transaction. Any number of processes may integrate; the lock
makes them take turns, so the log is one sequence. Nothing already in the tree is ever rehashed or rewritten.

Who integrates: a per-process background thread woken after every commit that appended events (so a request
never waits for it; it pauses GATHER_SECONDS between passes so that one short transaction sequences many events),
and every reader (checkpoint, proofs, entries, export, report) first, so a reader never misses an event committed
before it started. On PostgreSQL the background integrator does not wait for the lock (`SKIP LOCKED`); when the
lock is busy it tries again after the pause, so each process sees its own events sequenced.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from registry.audit.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from registry.audit.leaf import assemble_leaf
from registry.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_ranges,
    covering_nodes,
    flat_index,
    fold,
    inclusion_ranges,
    leaf_hash,
)
from registry.audit.tables import (
    AuditCheckpoint,
    AuditEntry,
    AuditNode,
    AuditPending,
    AuditPersonal,
    AuditTreeHead,
)
from registry.clock import utcnow
from registry.errors import RegistryError

log = logging.getLogger("hallmark.audit")

PENDING = AuditPending.__table__
HEAD = AuditTreeHead.__table__
ENTRIES = AuditEntry.__table__
NODES = AuditNode.__table__
PERSONAL = AuditPersonal.__table__
CHECKPOINTS = AuditCheckpoint.__table__

BATCH = 2000  # events per integration transaction


class AuditRangeError(RegistryError):
    """An index or tree size outside the log."""

    code = "invalid_input"
    status = 422


@dataclass(frozen=True)
class LoggedEntry:
    index: int
    leaf: bytes
    personal: dict[str, Any] | None  # {field: {"salt": base64, "value": ...}} for fields not erased

    @property
    def leaf_hash(self) -> bytes:
        return leaf_hash(self.leaf)


class AuditTree:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"

    # --- sequencing -------------------------------------------------------------------------------------------
    def integrate(self, *, wait: bool = True) -> int | None:
        """Sequence every event committed before this call; returns how many this call integrated. Each pass
        takes all waiting events (up to BATCH), so passes repeat only while a pass came back full: under a
        steady stream of appends this neither spins nor chases events committed after it started. With
        wait=False (PostgreSQL) it returns None as soon as another integrator holds the lock."""
        if not self._has_pending():  # lock-free: an idle log costs readers no write lock
            return 0
        total = 0
        while True:
            done = self._integrate_batch(wait=wait or self.is_sqlite)
            if done is None:
                return None
            total += done
            if done < BATCH:
                return total

    def _has_pending(self) -> bool:
        with self.engine.connect() as connection:
            return connection.execute(select(PENDING.c.id).limit(1)).first() is not None

    def _lock_head(self, connection: Connection, wait: bool) -> tuple[int, bytes] | None:
        if self.is_sqlite:
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, waiting up to busy_timeout
            # dequeued rows held personal data: zero their bytes rather than leave them in free pages
            connection.exec_driver_sql("PRAGMA secure_delete=ON")
            row = connection.execute(select(HEAD.c.size, HEAD.c.frontier).where(HEAD.c.id == 1)).first()
        else:
            row = connection.execute(select(HEAD.c.size, HEAD.c.frontier).where(HEAD.c.id == 1)
                                     .with_for_update(skip_locked=not wait)).first()
            if row is None and not wait:
                if connection.execute(select(HEAD.c.id).where(HEAD.c.id == 1)).first() is not None:
                    return None  # locked by another integrator
        if row is None:
            raise RegistryError("The audit log has no tree head row.", hint="Run `hallmark init` to migrate.")
        return int(row.size), bytes(row.frontier)

    def _integrate_batch(self, *, wait: bool) -> int | None:
        with self.engine.connect() as connection:
            head = self._lock_head(connection, wait)
            if head is None:
                connection.rollback()
                return None
            size, blob = head
            pending = connection.execute(select(PENDING).order_by(PENDING.c.id).limit(BATCH)).all()
            if not pending:
                connection.commit()
                return 0
            frontier = Frontier.from_bytes(size, blob)
            entries, nodes, personal = [], [], []
            for row in pending:  # under the lock only splicing, hashing and inserting: leaves were built at append
                index = frontier.size
                leaf = assemble_leaf(bytes(row.leaf_head), index, bytes(row.leaf_tail))
                entries.append({"leaf_index": index, "at": row.at, "kind": row.kind, "actor_id": row.actor_id,
                                "subject": row.subject, "leaf": leaf})
                nodes += [{"id": flat_index(level, position), "hash": value}
                          for level, position, value in frontier.append(leaf_hash(leaf))]
                if row.personal:
                    personal.append({"leaf_index": index, "fields": row.personal})
            connection.execute(insert(ENTRIES), entries)
            connection.execute(insert(NODES), nodes)
            if personal:
                connection.execute(insert(PERSONAL), personal)
            connection.execute(delete(PENDING).where(PENDING.c.id.in_([row.id for row in pending])))
            moved = connection.execute(update(HEAD).where(HEAD.c.id == 1, HEAD.c.size == size).values(
                size=frontier.size, frontier=frontier.to_bytes(), updated_at=utcnow()))
            if moved.rowcount != 1:  # cannot happen under the lock; refuse rather than fork the log
                raise RegistryError("The audit tree head moved while it was locked; nothing was integrated.")
            connection.commit()
            return len(pending)

    # --- the tree ---------------------------------------------------------------------------------------------
    def head(self) -> Frontier:
        with self.engine.connect() as connection:
            return self._head(connection)

    @staticmethod
    def _head(connection: Connection) -> Frontier:
        row = connection.execute(select(HEAD.c.size, HEAD.c.frontier).where(HEAD.c.id == 1)).first()
        if row is None:
            raise RegistryError("The audit log has no tree head row.", hint="Run `hallmark init` to migrate.")
        return Frontier.from_bytes(int(row.size), bytes(row.frontier))

    def size(self) -> int:
        return self.head().size

    @staticmethod
    def _check_size(size: int, current: int) -> None:
        if not 0 <= size <= current:
            raise AuditRangeError(f"The log has {current} entries; there is no tree of size {size}.",
                                  hint=f"Use a size from 1 to {current}.")

    def _range_hashes(self, ranges: list[tuple[int, int]], *, size: int) -> list[bytes]:
        """Each range's hash, folded from the stored complete subtrees that cover it: one primary-key query for
        O(log n) rows. The query also asks for leaf `size - 1`, which exists exactly when the tree has reached
        `size`, so no separate read of the tree head is needed."""
        covers = [covering_nodes(start, end) for start, end in ranges]
        sentinel = flat_index(0, size - 1)
        wanted = sorted({sentinel, *(flat_index(level, position) for cover in covers for level, position in cover)})
        with self.engine.connect() as connection:
            rows = connection.execute(select(NODES.c.id, NODES.c.hash).where(NODES.c.id.in_(wanted))).all()
        found = {int(row.id): bytes(row.hash) for row in rows}
        if sentinel not in found:
            self._check_size(size, self.size())
        if len(found) != len(wanted):
            raise RegistryError("The audit log is missing tree nodes it should have.",
                                hint="The database was edited by hand or restored partially; restore a backup.")
        return [fold([found[flat_index(level, position)] for level, position in cover]) for cover in covers]

    def root(self, size: int | None = None) -> bytes:
        if size is None:
            return self.head().root()
        if size == 0:
            self._check_size(size, self.size())
            return EMPTY_ROOT
        return self._range_hashes([(0, size)], size=size)[0]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        if not 0 <= index < size:
            raise AuditRangeError(f"Entry {index} is not in the tree of size {size}.",
                                  hint="The index must be less than the size.")
        return self._range_hashes(inclusion_ranges(index, size), size=size)

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        if not 1 <= old <= new:
            raise AuditRangeError(f"There is no consistency proof from size {old} to size {new}.",
                                  hint="Sizes must satisfy 1 <= old <= new.")
        if old == new:
            self._check_size(new, self.size())
            return []
        return self._range_hashes(consistency_ranges(old, new), size=new)

    # --- entries ----------------------------------------------------------------------------------------------
    def entries(self, start: int, end: int) -> list[LoggedEntry]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(ENTRIES.c.leaf_index, ENTRIES.c.leaf, PERSONAL.c.fields)
                .select_from(ENTRIES.outerjoin(PERSONAL, PERSONAL.c.leaf_index == ENTRIES.c.leaf_index))
                .where(ENTRIES.c.leaf_index >= start, ENTRIES.c.leaf_index < end)
                .order_by(ENTRIES.c.leaf_index)).all()
        return [LoggedEntry(int(row.leaf_index), bytes(row.leaf), row.fields) for row in rows]

    def iter_entries(self, start: int, end: int, *, page: int = 5000) -> Iterator[LoggedEntry]:
        for first in range(start, end, page):
            yield from self.entries(first, min(end, first + page))

    def iter_leaf_hashes(self, start: int, end: int, *, page: int = 50000) -> Iterator[bytes]:
        for first in range(start, end, page):
            with self.engine.connect() as connection:
                rows = connection.execute(  # leaves are the even flat indexes
                    select(NODES.c.hash).where(NODES.c.id >= 2 * first, NODES.c.id < 2 * min(end, first + page),
                                               NODES.c.id % 2 == 0)
                    .order_by(NODES.c.id)).all()
            for row in rows:
                yield bytes(row.hash)

    def entries_between(self, start_at: datetime, end_at: datetime) -> Iterator[tuple[int, bytes]]:
        """(index, leaf) of the entries logged in [start_at, end_at), in log order."""
        last = -1
        while True:
            with self.engine.connect() as connection:
                rows = connection.execute(
                    select(ENTRIES.c.leaf_index, ENTRIES.c.leaf)
                    .where(ENTRIES.c.at >= start_at, ENTRIES.c.at < end_at, ENTRIES.c.leaf_index > last)
                    .order_by(ENTRIES.c.leaf_index).limit(5000)).all()
            if not rows:
                return
            for row in rows:
                yield int(row.leaf_index), bytes(row.leaf)
            last = int(rows[-1].leaf_index)

    def scrub(self) -> None:
        """After an erasure: on SQLite, fold the write-ahead log into the database file and truncate it, so the
        erased values (zeroed by secure_delete) leave no older page image behind. PostgreSQL keeps dead row
        versions until VACUUM reuses their space; that is the operator's to schedule (see the README)."""
        if self.is_sqlite:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    # --- checkpoints ------------------------------------------------------------------------------------------
    def latest_checkpoint(self) -> AuditCheckpoint | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(CHECKPOINTS).order_by(CHECKPOINTS.c.size.desc(),
                                                                  CHECKPOINTS.c.id.desc()).limit(1)).first()
        return None if row is None else AuditCheckpoint(**row._mapping)

    def checkpoint(self, origin: str, sign: Callable[[Checkpoint], str], public_key: bytes) -> AuditCheckpoint:
        """A signed checkpoint of the whole log as it is now: the latest one if the tree has not grown since (and
        it is this key's), else a new one, stored so the log's history of checkpoints can be audited."""
        self.integrate(wait=True)
        frontier = self.head()
        latest = self.latest_checkpoint()
        if latest is not None and latest.size == frontier.size:
            try:
                open_checkpoint(latest.note, public_key, origin=origin)
                return latest
            except CheckpointError:
                pass  # signed with a retired key or for another origin: sign again
        root = frontier.root()
        note = sign(Checkpoint(origin=origin, size=frontier.size, root_hash=root))
        stored = AuditCheckpoint(size=frontier.size, root_hash=root, note=note, created_at=utcnow())
        with self.engine.begin() as connection:
            stored.id = connection.execute(insert(CHECKPOINTS).values(
                size=stored.size, root_hash=stored.root_hash, note=stored.note, created_at=stored.created_at)
            ).inserted_primary_key[0]
        return stored


# --- the per-process background integrator ------------------------------------------------------------------
IDLE_EXIT_SECONDS = 5.0
GATHER_SECONDS = 1.0  # after a pass, let events gather this long: one short transaction then sequences many
_integrators: dict[tuple[int, int], "_Integrator"] = {}
_integrators_lock = threading.Lock()


class _Integrator(threading.Thread):
    def __init__(self, engine: Engine, key: tuple[int, int]) -> None:
        super().__init__(daemon=True, name="hallmark-audit-integrator")
        self.tree = AuditTree(engine)
        self.key = key
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def run(self) -> None:
        while True:
            woken = self.wake.wait(IDLE_EXIT_SECONDS)
            if self.stopping.is_set():
                return
            if not woken:
                with _integrators_lock:
                    if not self.wake.is_set():  # idle: leave (a later request starts a new thread)
                        _integrators.pop(self.key, None)
                        return
                continue
            self.wake.clear()  # a commit after this line wakes the next pass; one before it is seen by this one
            try:
                if self.tree.integrate(wait=False) is None:
                    self.wake.set()  # another process holds the lock: try again after the pause
            except Exception as exc:  # the events stay pending (durable); the next append or reader integrates them
                log.warning("audit integration failed (%s); the events stay queued for the next one", exc)
            self.stopping.wait(GATHER_SECONDS)


@atexit.register
def _sequence_before_exit() -> None:
    """A short-lived process (a CLI command) may exit before its integrator's next pass: sequence what it
    queued now, so its events are in the tree when it returns. Best effort: they are durable either way."""
    with _integrators_lock:
        mine = [integrator for integrator in _integrators.values() if integrator.key[0] == os.getpid()]
    for integrator in mine:
        try:
            integrator.tree.integrate()
        except Exception as exc:  # e.g. the database is gone (a test's temporary file); nothing to keep
            log.debug("audit integration at exit skipped (%s)", exc)


def request_integration(engine: Engine) -> None:
    """Wake this process's integrator for `engine` (starting it if needed). Returns at once."""
    key = (os.getpid(), id(engine))
    with _integrators_lock:
        integrator = _integrators.get(key)
        if integrator is None or not integrator.is_alive():
            integrator = _Integrator(engine, key)
            _integrators[key] = integrator
            integrator.start()
        integrator.wake.set()


def stop_integration(engine: Engine) -> None:
    """Stop this process's integrator for `engine` and sequence what is still queued, before the engine is
    disposed: a thread must not outlive its database handle (it would hold locks on a database being dropped or
    migrated). Best effort for the last pass: queued events are durable either way."""
    with _integrators_lock:
        integrator = _integrators.pop((os.getpid(), id(engine)), None)
    if integrator is None:
        return
    integrator.stopping.set()
    integrator.wake.set()
    integrator.join(timeout=30)
    try:
        integrator.tree.integrate()
    except Exception as exc:
        log.warning("audit integration at shutdown failed (%s); the events stay queued for the next one", exc)
