"""The registry on real SQLite and real PostgreSQL: schema, accounts and keys, the job queue's claim."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlmodel import Session, select

from registry import Accounts, ApiKey, Cameos, Conflict, Database, Generation, Generations, Role, Status
from registry.errors import DatabaseUnavailable


def test_migrate_is_idempotent_and_schema_is_checked(database_url: str) -> None:
    database = Database(database_url)
    assert database.migrate() is None  # an empty database: created from nothing
    assert database.migrate() == database.head_revision()  # then already at the newest: nothing to do
    database.require_schema()
    database.dispose()


def test_api_keys_are_hashed_and_revocable(database_url: str) -> None:
    database = Database(database_url)
    database.migrate()
    with database.session() as session:
        accounts = Accounts(session)
        alice = accounts.create("alice", Role.creator)
        key = accounts.issue_key(alice)
    with database.session() as session:
        accounts = Accounts(session)
        assert accounts.authenticate(key).name == "alice"
        assert accounts.authenticate(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
        assert accounts.authenticate("not-a-key") is None
        stored = session.exec(select(ApiKey)).all()
        assert all(key.split("_", 2)[2] not in row.secret_sha256 for row in stored)
        accounts.revoke_key(key.split("_")[1])
    with database.session() as session:
        assert Accounts(session).authenticate(key) is None
    database.dispose()


def test_a_job_is_claimed_by_exactly_one_worker(database_url: str) -> None:
    database = Database(database_url)
    database.migrate()
    with database.session() as session:
        owner = Accounts(session).create("owner")
        generation = Generations(session).add(Generation(requester_id=owner.id, prompt="p", status=Status.queued))
    with database.session() as first, database.session() as second:
        won = [Generations(first).claim(generation.id, "w1")]
        first.commit()
        won.append(Generations(second).claim(generation.id, "w2"))
    assert won == [True, False]
    with database.session() as session:
        assert Generations(session).get(generation.id).worker == "w1"
    database.dispose()


def test_database_urls_as_hosts_hand_them_out_and_unsupported_backends(database_url: str) -> None:
    """"postgres://" (Heroku-style, libpq tools) connects like "postgresql://"; a backend Hallmark does not run on is
    refused with a hint, not a driver traceback."""
    import pytest

    from registry.errors import DatabaseUnavailable

    if database_url.startswith("postgresql"):
        database = Database("postgres://" + database_url.split("://", 1)[1])
        try:
            database.migrate()
            with database.session() as session:
                Accounts(session).create("heroku", Role.creator)
            with database.session() as session:
                assert [a.name for a in Accounts(session).list()] == ["heroku"]
        finally:
            database.dispose()
    with pytest.raises(DatabaseUnavailable, match="SQLite or PostgreSQL"):
        Database("mysql://someone@127.0.0.1/test")


def test_a_name_taken_by_a_concurrent_transaction_is_a_conflict_not_a_crash(database_url: str) -> None:
    """Two requests register the same handle (or account name) at once: both pass the "is it free?" check, and the
    unique index refuses the second insert. That was a 500 IntegrityError; it is a 409 Conflict. PostgreSQL shows the
    race for real: the second insert waits for the first transaction and fails when it commits."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite serialises writers before the check; the race needs concurrent writers")
    database = Database(database_url)
    database.migrate()
    with database.session() as session:
        owner_id = Accounts(session).create("owner").id
    outcomes: dict[str, object] = {}

    def second(what: str, create: Callable[[Session], object]) -> None:
        try:
            with database.session() as session:
                create(session)
            outcomes[what] = "created"
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test looks at
            outcomes[what] = exc

    for what, create in (("cameo", lambda s: Cameos(s).create("racer", owner_id)),
                         ("account", lambda s: Accounts(s).create("racer"))):
        with database.session() as first:
            create(first)  # inserted, not committed: the second insert waits on the unique index
            thread = threading.Thread(target=second, args=(what, create))
            thread.start()
            # Commit only once the second insert waits on the unique index (past its own "is it free?" check), so
            # the IntegrityError path is what runs, not the ordinary check finding the committed row.
            assert _wait_for_a_lock_wait(database), "the second insert never waited on the first"
        thread.join(30)
        assert isinstance(outcomes[what], Conflict), outcomes[what]
    database.dispose()


def _wait_for_a_lock_wait(database: Database, seconds: float = 30.0) -> bool:
    """True once another session of this database waits for a lock (PostgreSQL's pg_stat_activity)."""
    from sqlalchemy import text

    deadline = time.monotonic() + seconds
    with database.engine.connect() as monitor:
        while time.monotonic() < deadline:
            waiting = monitor.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")).scalar_one()
            monitor.rollback()  # the activity view is a snapshot per transaction: take a fresh one next time
            if waiting:
                return True
            time.sleep(0.05)
    return False


def test_an_sqlite_data_dir_that_was_never_initialised_says_to_run_init(tmp_path: Path) -> None:
    """Before, it said "Check HALLMARK_DATABASE_URL and that the server is running", though SQLite has no server."""
    missing = Database(f"sqlite:///{tmp_path / 'nowhere' / 'hallmark.db'}")
    with pytest.raises(DatabaseUnavailable) as error:
        missing.require_schema()
    assert "nowhere/hallmark.db" in error.value.message and "hallmark init" in (error.value.hint or "")
    with pytest.raises(DatabaseUnavailable) as error:
        missing.migrate()
    assert "Cannot create the SQLite database" in error.value.message and "writable" in (error.value.hint or "")
