"""Audit log benchmark: append throughput with parallel writers, and proof times at 1,000,000 entries.

    python -m bench.audit                       # full run, writes the `audit` section of BENCHMARKS.md
    python -m bench.audit --entries 20000 --appends 500 --no-write   # a quick look

Appends: W writer processes each commit events one per transaction through the real API
(`AuditLog(session).append(...)`, prompt as personal data); the clock stops when every event is sequenced into
the tree (not merely queued). Baseline, side by side: the same writers doing a plain INSERT of a comparable row
into a bare table, one per transaction.

Proofs: a log of N entries is built through the real integrator, then random inclusion and consistency proofs
are timed (each checked against the RFC 9162 verifier). Baselines: one primary-key SELECT of an entry (the
cheapest read the database can do) and recomputing the root from all N stored leaf hashes (what a log without
stored interior nodes would pay per proof).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Integer, MetaData, String, Table, create_engine, insert, select, text

from bench.report import markdown_table, write_section

POSTGRES_ADMIN_URL = os.environ.get("HALLMARK_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PROMPT = "a slow dolly shot of a lighthouse at dusk, waves breaking on black rocks, 35mm film grain"

_plain_metadata = MetaData()
PLAIN = Table("bench_plain_inserts", _plain_metadata,
              Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
              Column("kind", String(64)), Column("subject", String(64)), Column("data", JSON))
PLAIN_INSERT = insert(PLAIN)


# --- databases --------------------------------------------------------------------------------------------------
class Scratch:
    """A fresh database: a SQLite file in a temp dir, or a new PostgreSQL schema; removed afterwards."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._tmp = tempfile.TemporaryDirectory(prefix="hallmark-bench-audit-")
        if kind == "sqlite":
            self.url = f"sqlite:///{Path(self._tmp.name) / 'audit.db'}"
        else:
            self.schema = f"bench_audit_{uuid.uuid4().hex[:10]}"
            admin = create_engine(POSTGRES_ADMIN_URL)
            with admin.begin() as connection:
                connection.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            admin.dispose()
            self.url = f"{POSTGRES_ADMIN_URL}?options=-csearch_path%3D{self.schema}"
        from registry import Database

        database = Database(self.url)
        database.migrate()
        _plain_metadata.create_all(database.engine)
        database.dispose()

    def size_bytes(self) -> int:
        engine = create_engine(self.url)
        with engine.connect() as connection:
            if self.kind == "sqlite":
                pages = connection.exec_driver_sql("PRAGMA page_count").scalar_one()
                size = pages * connection.exec_driver_sql("PRAGMA page_size").scalar_one()
            else:
                size = connection.execute(text(
                    "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = :schema AND c.relkind = 'r' "
                    "AND c.relname LIKE 'audit_%'"), {"schema": self.schema}).scalar_one()
        engine.dispose()
        return int(size or 0)

    def close(self) -> None:
        if self.kind == "postgres":
            admin = create_engine(POSTGRES_ADMIN_URL)
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{self.schema}" CASCADE'))
            admin.dispose()
        self._tmp.cleanup()


# --- appends ----------------------------------------------------------------------------------------------------
def _writer(url: str, mode: str, writer: int, count: int, per_transaction: int, start: Any, ready: Any) -> None:
    """One writer process: waits for the start signal, then commits `count` events."""
    from registry import AuditLog, Database

    database = Database(url)
    with database.engine.connect():
        pass  # open the pool before the clock starts
    ready.put(writer)
    start.wait()
    for first in range(0, count, per_transaction):
        numbers = range(first, min(count, first + per_transaction))
        if mode == "audit":
            with database.session() as session:
                for number in numbers:
                    AuditLog(session).append("bench.generation_requested", actor_id=f"writer{writer}",
                                             subject=f"{writer}-{number}", params={"frames": 49, "fps": 16},
                                             personal={"prompt": PROMPT})
        elif mode == "session":  # what any Hallmark write pays: a Database.session() unit of work
            with database.session() as session:
                for number in numbers:
                    session.execute(PLAIN_INSERT, {"kind": "bench.generation_requested",
                                                   "subject": f"{writer}-{number}",
                                                   "data": {"frames": 49, "fps": 16, "prompt": PROMPT}})
        else:  # the bare minimum: a Core connection
            with database.engine.begin() as connection:
                for number in numbers:
                    connection.execute(PLAIN_INSERT, {"kind": "bench.generation_requested",
                                                      "subject": f"{writer}-{number}",
                                                      "data": {"frames": 49, "fps": 16, "prompt": PROMPT}})
    ready.put(("done", writer))  # the clock stops here (or, for the audit log, once all is sequenced)
    database.dispose()


def append_rate(url: str, mode: str, writers: int, per_writer: int, per_transaction: int) -> float:
    """Events per second, from the start signal until every event is committed (and, for the audit log,
    sequenced into the tree)."""
    from registry import AuditTree, Database

    context = multiprocessing.get_context("spawn")
    start, ready = context.Event(), context.Queue()
    processes = [context.Process(target=_writer, args=(url, mode, n, per_writer, per_transaction, start, ready))
                 for n in range(writers)]
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=120)
    database = Database(url)
    tree = AuditTree(database.engine)
    before = tree.size()
    began = time.perf_counter()
    start.set()
    done = 0
    while done < len(processes):  # process start-up and exit stay outside the clock
        try:
            ready.get(timeout=1)
            done += 1
        except queue.Empty:
            if any(process.exitcode not in (None, 0) for process in processes):
                raise RuntimeError(f"a {mode} writer failed") from None
    if mode == "audit":
        tree.integrate()  # sequence whatever the writers' own integrators had not yet
    elapsed = time.perf_counter() - began
    for process in processes:
        process.join()
        if process.exitcode:
            raise RuntimeError(f"a {mode} writer failed (exit {process.exitcode})")
    if mode == "audit":
        tree.integrate()
        if tree.size() - before != writers * per_writer:
            raise RuntimeError("not every appended event reached the tree")
    database.dispose()
    return writers * per_writer / elapsed


# --- a big log ----------------------------------------------------------------------------------------------------
def fill(url: str, entries: int, progress: Callable[[str], None]) -> float:
    """Queue `entries` events in bulk, then sequence them with the real integrator. Returns events/s of the
    integration (leaf encoding, hashing, node storage)."""
    from registry import AuditLog, AuditTree, Database
    from registry.audit import log as log_module

    database = Database(url)
    tree = AuditTree(database.engine)
    log_module.request_integration = lambda engine: None  # only the timed integrate() below sequences
    chunk = 20000
    integrated_time = 0.0
    for first in range(0, entries, chunk):
        with database.session() as session:  # the real append path, many events per transaction
            audit = AuditLog(session)
            for number in range(first, min(entries, first + chunk)):
                audit.append("bench.generation_requested", actor_id="writer0", subject=f"g{number}",
                             params={"frames": 49, "fps": 16}, personal={"prompt": PROMPT})
        began = time.perf_counter()
        tree.integrate()
        integrated_time += time.perf_counter() - began
        progress(f"  {min(entries, first + chunk):>9,} / {entries:,} entries")
    database.dispose()
    return entries / integrated_time


@dataclass
class ProofTimes:
    inclusion_ms: list[float]
    consistency_ms: list[float]
    select_ms: list[float]
    rehash_s: float


def time_proofs(url: str, samples: int) -> ProofTimes:
    from registry import AuditTree, Database
    from registry.audit import merkle
    from registry.audit.tables import AuditEntry

    database = Database(url)
    tree = AuditTree(database.engine)
    size = tree.size()
    root = tree.root()
    rng = random.Random(7)
    entries = AuditEntry.__table__
    inclusion, consistency, selects = [], [], []
    for _ in range(samples):  # interleaved, so noise hits all three alike
        index = rng.randrange(size)
        began = time.perf_counter()
        proof = tree.inclusion_proof(index, size)
        inclusion.append((time.perf_counter() - began) * 1000)
        leaf = tree.entries(index, index + 1)[0]
        if not merkle.verify_inclusion(leaf.leaf_hash, index, size, proof, root):
            raise RuntimeError(f"inclusion proof for {index} does not verify")

        old = rng.randrange(1, size)
        began = time.perf_counter()
        proof = tree.consistency_proof(old, size)
        consistency.append((time.perf_counter() - began) * 1000)
        if len(consistency) <= 50 and not merkle.verify_consistency(old, size, tree.root(old), root, proof):
            raise RuntimeError(f"consistency proof {old} -> {size} does not verify")

        began = time.perf_counter()
        with database.engine.connect() as connection:
            connection.execute(select(entries.c.leaf).where(entries.c.leaf_index == index)).one()
        selects.append((time.perf_counter() - began) * 1000)
    began = time.perf_counter()
    rehashed = merkle.root_of(tree.iter_leaf_hashes(0, size))
    rehash = time.perf_counter() - began
    if rehashed != (size, root):
        raise RuntimeError("the stored leaf hashes do not rebuild the root")
    database.dispose()
    return ProofTimes(inclusion, consistency, selects, rehash)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- main -------------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000, help="log size for the proof timings")
    parser.add_argument("--appends", type=int, default=2500, help="events per writer process")
    parser.add_argument("--writers", type=int, default=4, help="parallel writer processes")
    parser.add_argument("--samples", type=int, default=1000, help="proofs of each kind to time")
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    say = lambda line: print(line, flush=True)  # noqa: E731

    append_rows, proof_rows = [], []
    for kind in args.databases.split(","):
        # one event per transaction (most changes), and two (a generation request: requested + decision)
        # and, for PostgreSQL whose commits wait on fsync, more writers, so commits can share a WAL flush
        for writers, per_transaction in ((1, 1), (args.writers, 1), (args.writers, 2), (2 * args.writers, 2)):
            rates: dict[str, list[float]] = {"plain": [], "session": [], "audit": []}
            scratch = Scratch(kind)
            try:
                for _ in range(2):  # alternate, so drift in machine load hits all alike
                    for mode in rates:
                        rates[mode].append(append_rate(scratch.url, mode, writers, args.appends, per_transaction))
            finally:
                scratch.close()
            plain, session, audit = (max(rates[mode]) for mode in ("plain", "session", "audit"))
            say(f"{kind} {writers} writer(s), {per_transaction}/txn: plain INSERT {plain:,.0f}/s, in a session "
                f"{session:,.0f}/s, audit append {audit:,.0f}/s")
            append_rows.append([kind, writers, per_transaction, f"{writers * args.appends:,}", f"{plain:,.0f}",
                                f"{session:,.0f}", f"{audit:,.0f}", f"{audit / plain:.2f}", f"{audit / session:.2f}",
                                "yes" if audit >= 2000 else "no"])

        scratch = Scratch(kind)
        try:
            say(f"{kind}: building a log of {args.entries:,} entries")
            build_rate = fill(scratch.url, args.entries, say)
            times = time_proofs(scratch.url, args.samples)
            size_mb = scratch.size_bytes() / 1e6
        finally:
            scratch.close()
        select_p50 = statistics.median(times.select_ms)
        for name, values in (("inclusion", times.inclusion_ms), ("consistency", times.consistency_ms)):
            p50, p99 = statistics.median(values), percentile(values, 0.99)
            say(f"{kind} {name}: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {max(values):.2f} ms "
                f"(PK select p50 {select_p50:.2f} ms; full rehash {times.rehash_s:.1f} s)")
            proof_rows.append([kind, f"{args.entries:,}", name, f"{p50:.2f}", f"{p99:.2f}", f"{max(values):.2f}",
                               f"{select_p50:.2f} / {percentile(times.select_ms, 0.99):.2f}",
                               f"{p50 / select_p50:.1f}", f"{times.rehash_s * 1000:,.0f}",
                               "yes" if p50 <= 5 else "no", "yes" if p99 <= 5 else "no"])
        proof_rows[-1].append(f"{build_rate:,.0f}")
        proof_rows[-2].append(f"{build_rate:,.0f}")
        proof_rows[-1].append(f"{size_mb:,.0f}")
        proof_rows[-2].append(f"{size_mb:,.0f}")

    body = "\n\n".join([
        "**Appends.** Writer processes commit events through `AuditLog(session).append` (the prompt as "
        "erasable personal data), one or two per transaction (a generation request logs two); the clock runs "
        "until every event is sequenced into the Merkle tree, not merely queued. Baseline: the same processes "
        "doing a plain INSERT of a comparable row into a bare table, as many per transaction: once on a bare "
        "Core connection (the floor), once inside `Database.session()` (the unit of work every Hallmark write "
        "already runs in), alternated with the audit runs (best of 2 each). Target ≥ 2,000 appends/s.",
        markdown_table(["database", "writer processes", "events per transaction", "events",
                        "plain INSERT /s (Core connection)", "plain INSERT /s (in a Database.session())",
                        "audit append /s", "audit / plain", "audit / plain in session", "≥ 2,000/s"], append_rows),
        f"**Proofs at {args.entries:,} entries.** {args.samples} random inclusion proofs (index in the whole "
        f"tree) and {args.samples} random consistency proofs (random old size to the whole tree), each served "
        f"from stored complete-subtree nodes in one query and checked with the RFC 9162 verifier. Baselines in "
        f"the same run: one primary-key SELECT of an entry, and recomputing the root from all stored leaf "
        f"hashes (what a proof would cost without stored nodes). Target ≤ 5 ms. `sequencing /s` is the "
        f"integrator's rate while building the log (leaf splice, hashing, node storage, one transaction per "
        f"2,000 events).",
        markdown_table(["database", "entries", "proof", "p50 ms", "p99 ms", "max ms", "PK select p50 / p99 ms",
                        "p50 / PK select", "full rehash ms", "p50 ≤ 5 ms", "p99 ≤ 5 ms", "sequencing /s",
                        "audit tables MB"], proof_rows),
    ])
    print(body)
    if not args.no_write:
        command = "python -m bench.audit" + ("" if args.entries == 1_000_000 else f" --entries {args.entries}")
        write_section("audit", "Audit log: appends and proofs", command, body)


if __name__ == "__main__":
    main()
