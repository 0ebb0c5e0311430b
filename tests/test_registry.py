"""The registry on real SQLite and real PostgreSQL: schema, accounts and keys, the job queue's claim."""

from __future__ import annotations

from sqlmodel import select

from registry import Accounts, ApiKey, Database, Generation, Generations, Role, Status


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
