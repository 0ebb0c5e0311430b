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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Engine

from registry.audit.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from registry.audit.leaf import LeafError, assemble_leaf, decode_leaf, format_time
from registry.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_ranges,
    covering_nodes,
    flat_index,
    fold,
    inclusion_ranges,
    leaf_hash,
    verify_consistency,
)
from registry.audit.state import StateFileError, read_signed_state, write_signed_state
from registry.audit.tables import (
    AuditCheckpoint,
    AuditEntry,
    AuditNode,
    AuditPending,
    AuditPersonal,
    AuditTreeHead,
)
from registry.clock import as_utc, utcnow
from registry.errors import RegistryError

log = logging.getLogger("hallmark.audit")

PENDING = AuditPending.__table__
HEAD = AuditTreeHead.__table__
ENTRIES = AuditEntry.__table__
NODES = AuditNode.__table__
PERSONAL = AuditPersonal.__table__
CHECKPOINTS = AuditCheckpoint.__table__

BATCH = 2000  # events per integration transaction
PAGE = 5000  # entries per read when entries are checked
# Entries are sequenced in the order they were appended, and `at` is the time of the append, so `at` grows with
# the index up to the small disorder of concurrent appends (and clock skew between machines). Reports look for a
# period's first and last entry by bisection over the hashed leaves, widened by this margin.
CLOCK_DISORDER = timedelta(hours=1)
MAX_TREE_SIZE = 2**53 - 1  # beyond any log (and within a 64-bit node number): larger sizes are refused unread
INTEGRITY_HINT = ("The audit tables were changed outside Hallmark, or restored partially. Do not sign or publish "
                  "anything until this is investigated: restore the database from a backup and compare it with "
                  "`hallmark audit verify --database`.")


class AuditRangeError(RegistryError):
    """An index or tree size outside the log."""

    code = "invalid_input"
    status = 422


class AuditIntegrityError(RegistryError):
    """The stored log contradicts itself or the checkpoints the log signed: it was changed outside Hallmark."""

    code = "audit_integrity"
    status = 500

    def __init__(self, message: str, *, hint: str | None = INTEGRITY_HINT) -> None:
        super().__init__(message, hint=hint)


def column_mismatch(index: int, at: datetime, kind: str, actor_id: str | None, subject: str | None,
                    event: dict[str, Any]) -> str | None:
    """Which queryable column of an entry row differs from its (hashed) leaf, if any. Reports and subject lookups
    select rows by these columns, so a column changed by hand would hide an entry without touching the tree."""
    if event["index"] != index:
        return f"row {index} holds the leaf of entry {event['index']}"
    for name, column, leaf_value in (("at", format_time(as_utc(at) or at), event["at"]), ("kind", kind, event["kind"]),
                                     ("actor_id", actor_id, event["actor"]), ("subject", subject, event["subject"])):
        if column != leaf_value:
            return f"entry {index}: the {name} column says {column!r}, its leaf says {leaf_value!r}"
    return None


@dataclass(frozen=True)
class CheckedEntry:
    index: int
    leaf: bytes
    event: dict[str, Any]


@dataclass
class DatabaseReport:
    """What `AuditTree.verify_database` found: entries -> leaf hashes -> nodes -> head, and every signed root."""

    size: int = 0
    root_hash: bytes = EMPTY_ROOT
    signed_sizes: list[int] = field(default_factory=list)  # sizes of signed checkpoints the entries hash to
    problems: list[str] = field(default_factory=list)
    more_problems: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, message: str, limit: int = 20) -> None:
        if len(self.problems) < limit:
            self.problems.append(message)
        else:
            self.more_problems += 1


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

    @classmethod
    def _check_size_bound(cls, size: int) -> None:
        """Sizes no log reaches are refused before they become node numbers (beyond a 64-bit integer column)."""
        if size > MAX_TREE_SIZE:
            raise AuditRangeError(f"There is no tree of size {size}.", hint="Use a size up to the log's size.")

    def _range_hashes(self, ranges: list[tuple[int, int]], *, size: int) -> list[bytes]:
        """Each range's hash, folded from the stored complete subtrees that cover it: one primary-key query for
        O(log n) rows. The query also asks for leaf `size - 1`, which exists exactly when the tree has reached
        `size`, so no separate read of the tree head is needed."""
        self._check_size_bound(size)
        covers = [covering_nodes(start, end) for start, end in ranges]
        sentinel = flat_index(0, size - 1)
        wanted = sorted({sentinel, *(flat_index(level, position) for cover in covers for level, position in cover)})
        with self.engine.connect() as connection:
            rows = connection.execute(select(NODES.c.id, NODES.c.hash).where(NODES.c.id.in_(wanted))).all()
        found = {int(row.id): bytes(row.hash) for row in rows}
        if sentinel not in found:
            self._check_size(size, self.size())
        if len(found) != len(wanted):
            raise AuditIntegrityError("The audit log is missing tree nodes it should have.")
        return [fold([found[flat_index(level, position)] for level, position in cover]) for cover in covers]

    def root(self, size: int | None = None) -> bytes:
        if size is None:
            return self.head().root()
        if size == 0:
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
            self._check_size_bound(new)
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

    def checked_entries(self, start: int, end: int) -> list[CheckedEntry]:
        """Entries [start, end) with each one checked before it is used: present, its leaf decodes, hashes to the
        leaf node the tree (and so every signed checkpoint) commits to, and its queryable columns say what its leaf
        says. Anything else raises AuditIntegrityError: a report must not count a forged or hidden entry."""
        checked, problems = self._check_page(start, end)
        if problems:
            raise AuditIntegrityError(f"The audit log's stored entries do not match its tree: {problems[0]}"
                                      + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "") + ".")
        return checked

    def _check_page(self, start: int, end: int) -> tuple[list[CheckedEntry], list[str]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(ENTRIES.c.leaf_index, ENTRIES.c.at, ENTRIES.c.kind, ENTRIES.c.actor_id, ENTRIES.c.subject,
                       ENTRIES.c.leaf)
                .where(ENTRIES.c.leaf_index >= start, ENTRIES.c.leaf_index < end).order_by(ENTRIES.c.leaf_index)
            ).all()
            hashes = {int(row.id) // 2: bytes(row.hash) for row in connection.execute(
                select(NODES.c.id, NODES.c.hash).where(NODES.c.id >= 2 * start, NODES.c.id < 2 * end,
                                                       NODES.c.id % 2 == 0))}
        checked: list[CheckedEntry] = []
        problems: list[str] = []
        found = {int(row.leaf_index) for row in rows}
        missing = [index for index in range(start, end) if index not in found]
        if missing:
            problems.append(f"entr{'y' if len(missing) == 1 else 'ies'} {_listed(missing)} "
                            f"{'is' if len(missing) == 1 else 'are'} missing")
        for row in rows:
            index, leaf = int(row.leaf_index), bytes(row.leaf)
            try:
                event = decode_leaf(leaf)
            except LeafError as exc:
                problems.append(f"entry {index}: {exc}")
                continue
            if hashes.get(index) != leaf_hash(leaf):
                problems.append(f"entry {index}: its leaf is not the one the tree committed to")
                continue
            mismatch = column_mismatch(index, row.at, row.kind, row.actor_id, row.subject, event)
            if mismatch is not None:
                problems.append(mismatch)
                continue
            checked.append(CheckedEntry(index, leaf, event))
        return checked, problems

    def _leaf_time(self, index: int) -> str:
        [entry] = self.checked_entries(index, index + 1)
        return str(entry.event["at"])

    def _first_logged_at(self, at: datetime, size: int) -> int:
        """The first index whose leaf's time is at or after `at`, by bisection over the leaves themselves (not the
        `at` column, which the tree does not protect). Times grow with the index up to CLOCK_DISORDER."""
        wanted, low, high = format_time(at), 0, size
        while low < high:
            middle = (low + high) // 2
            if self._leaf_time(middle) < wanted:  # format_time strings sort as the times they name
                low = middle + 1
            else:
                high = middle
        return low

    def entries_between(self, start_at: datetime, end_at: datetime, *, size: int) -> Iterator[CheckedEntry]:
        """The checked entries of the tree of `size` whose leaves were logged in [start_at, end_at), in log order.
        The period is found in the leaves, widened by CLOCK_DISORDER, and every entry read is checked
        (checked_entries), so an entry cannot be moved out of a period, or hidden, by editing its row."""
        first = self._first_logged_at(start_at - CLOCK_DISORDER, size)
        last = self._first_logged_at(end_at + CLOCK_DISORDER, size)
        low, high = format_time(start_at), format_time(end_at)
        for page in range(first, last, PAGE):
            for entry in self.checked_entries(page, min(last, page + PAGE)):
                if low <= entry.event["at"] < high:
                    yield entry

    def verify_database(self, origin: str, public_key: bytes, state_file: Path | None) -> DatabaseReport:
        """Check the stored log against itself and against what the log signed, without exporting: every entry
        (present, decodes, columns match its leaf) -> its leaf hash -> every stored node -> the tree head, and the
        root at the size of every stored checkpoint signed by this key and of the state file's checkpoint."""
        self.integrate(wait=True)
        report = DatabaseReport()
        head = self.head()
        signed: dict[int, set[bytes]] = {}
        for _, checkpoint in self._signed_states(origin, public_key, state_file, every=True):
            signed.setdefault(checkpoint.size, set()).add(checkpoint.root_hash)
        frontier = Frontier()
        if 0 in signed:
            self._compare_signed(report, signed.pop(0), frontier.root(), 0)
        for page in range(0, head.size, PAGE):
            end = min(head.size, page + PAGE)
            _, problems = self._check_page(page, end)
            for problem in problems:
                report.problem(problem)
            expected: dict[int, bytes] = {}
            for leaf in self._stored_leaves(page, end):
                for level, position, value in frontier.append(leaf_hash(leaf)):
                    expected[flat_index(level, position)] = value
                if frontier.size in signed:
                    self._compare_signed(report, signed.pop(frontier.size), frontier.root(), frontier.size)
            self._compare_nodes(report, expected)
        if frontier.size != head.size or frontier.root() != head.root():
            report.problem(f"the tree head (size {head.size}) does not match the entries (size {frontier.size})")
        with self.engine.connect() as connection:
            beyond = connection.execute(select(ENTRIES.c.leaf_index).where(ENTRIES.c.leaf_index >= head.size)
                                        .limit(1)).first()
        if beyond is not None:
            report.problem(f"entry {beyond.leaf_index} is stored beyond the tree head's size {head.size}")
        for size in sorted(signed):
            report.problem(f"a checkpoint of size {size} was signed, but the log has only {head.size} entries")
        report.size, report.root_hash = head.size, head.root()
        report.signed_sizes.sort()
        return report

    def _stored_leaves(self, start: int, end: int) -> list[bytes]:
        with self.engine.connect() as connection:
            return [bytes(row.leaf) for row in connection.execute(
                select(ENTRIES.c.leaf).where(ENTRIES.c.leaf_index >= start, ENTRIES.c.leaf_index < end)
                .order_by(ENTRIES.c.leaf_index))]

    @staticmethod
    def _compare_signed(report: DatabaseReport, roots: set[bytes], root: bytes, size: int) -> None:
        if roots == {root}:
            report.signed_sizes.append(size)
        else:
            report.problem(f"the entries do not hash to the signed checkpoint of size {size}: the log was rewritten")

    def _compare_nodes(self, report: DatabaseReport, expected: dict[int, bytes]) -> None:
        ids = sorted(expected)
        stored: dict[int, bytes] = {}
        with self.engine.connect() as connection:
            for first in range(0, len(ids), 1000):
                stored.update((int(row.id), bytes(row.hash)) for row in connection.execute(
                    select(NODES.c.id, NODES.c.hash).where(NODES.c.id.in_(ids[first:first + 1000]))))
        wrong = [number for number in ids if stored.get(number) != expected[number]]
        if wrong:
            report.problem(f"{len(wrong)} stored tree node(s) do not match the entries (first: node {wrong[0]})")

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

    def checkpoint(self, origin: str, sign: Callable[[Checkpoint], str], public_key: bytes, *,
                   state_file: Path | None = None) -> AuditCheckpoint:
        """A signed checkpoint of the whole log as it is now: the latest one if the tree has not changed since (and
        it is this key's), else a new one, stored so the log's history of checkpoints can be audited.

        Nothing is signed unless the tree provably extends the last checkpoint this log signed, both the one in
        `state_file` (outside the database, so deleting the stored checkpoints does not help a forger) and the
        latest stored one; the entries added since are checked against the tree first. Else AuditIntegrityError."""
        self.integrate(wait=True)
        frontier = self.head()
        root = frontier.root()
        known = self._signed_states(origin, public_key, state_file, every=False)
        for source, signed in known:
            self._require_extension(source, signed, frontier.size, root)
        checked_from = max((signed.size for _, signed in known), default=0)
        for page in range(checked_from, frontier.size, PAGE):
            self.checked_entries(page, min(frontier.size, page + PAGE))
        latest = self.latest_checkpoint()
        if latest is not None and latest.size == frontier.size and bytes(latest.root_hash) == root \
                and _signed_by(latest.note, public_key, origin):
            stored = latest
        else:
            note = sign(Checkpoint(origin=origin, size=frontier.size, root_hash=root))
            stored = AuditCheckpoint(size=frontier.size, root_hash=root, note=note, created_at=utcnow())
            with self.engine.begin() as connection:
                stored.id = connection.execute(insert(CHECKPOINTS).values(
                    size=stored.size, root_hash=stored.root_hash, note=stored.note, created_at=stored.created_at)
                ).inserted_primary_key[0]
        if state_file is not None:
            write_signed_state(state_file, stored.note, stored.size, public_key, origin)
        return stored

    def _signed_states(self, origin: str, public_key: bytes, state_file: Path | None, *,
                       every: bool) -> list[tuple[str, Checkpoint]]:
        """The checkpoints this key signed that the log must extend: the state file's, and the latest stored one
        (every stored one with every=True). Stored rows not signed by this key (a retired key, a forged row) are
        passed over; the state file must verify, or nothing is signed."""
        states: list[tuple[str, Checkpoint]] = []
        if state_file is not None:
            try:
                remembered = read_signed_state(state_file, public_key, origin)
            except StateFileError as exc:
                raise AuditIntegrityError(f"The log's record of its last signed checkpoint is unusable: {exc}.",
                                          hint="Restore the file from a backup. Only if the log key was replaced "
                                               "on purpose, move the file away (the next checkpoint starts it "
                                               "again).") from exc
            if remembered is not None:
                states.append((str(state_file), remembered))
        query = select(CHECKPOINTS.c.note).order_by(CHECKPOINTS.c.size.desc(), CHECKPOINTS.c.id.desc())
        with self.engine.connect() as connection:
            notes = [row.note for row in connection.execute(query if every else query.limit(1))]
        for note in notes:
            try:
                states.append(("the stored checkpoints", open_checkpoint(note, public_key, origin=origin)))
            except CheckpointError:
                continue
        return states

    def _require_extension(self, source: str, signed: Checkpoint, size: int, root: bytes) -> None:
        """Refuse unless the tree of `size` with `root` provably extends the signed checkpoint (RFC 9162 proof)."""
        where = f"the checkpoint of size {signed.size} the log signed ({source})"
        if signed.size > size:
            raise AuditIntegrityError(f"The audit log has {size} entries, fewer than {where}: entries were removed; "
                                      "nothing was signed.")
        if signed.size == 0:
            return
        try:
            proof = self.consistency_proof(signed.size, size)
        except AuditIntegrityError as exc:
            raise AuditIntegrityError(f"{exc.message} The log cannot be shown to extend {where}; nothing was "
                                      "signed.") from exc
        if not verify_consistency(signed.size, size, signed.root_hash, root, proof):
            raise AuditIntegrityError(f"The audit log's tree does not extend {where}: entries the log had signed "
                                      "were changed, removed or reordered; nothing was signed.")


def _signed_by(note: str, public_key: bytes, origin: str) -> bool:
    try:
        open_checkpoint(note, public_key, origin=origin)
        return True
    except CheckpointError:
        return False


def _listed(indexes: list[int]) -> str:
    return ", ".join(str(index) for index in indexes[:10]) + (", ..." if len(indexes) > 10 else "")


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
