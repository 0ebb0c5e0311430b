"""Engine, sessions and schema migrations: SQLite file by default, PostgreSQL by URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlmodel import Session, create_engine

from registry.audit.tree import stop_integration
from registry.errors import DatabaseUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"


class Database:
    """One engine per process; sessions are short and committed as a unit (a request, a job step)."""

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise DatabaseUnavailable(
                f"The database URL is not valid: {exc}",
                hint="Set HALLMARK_DATABASE_URL to e.g. postgresql+psycopg://user@host/db or leave it unset.",
            ) from exc
        self.url = url
        # "postgres://" is what Heroku-style hosts and libpq tools hand out; SQLAlchemy knows only "postgresql".
        if parsed.drivername in ("postgres", "postgresql"):
            parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3 is what we ship
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        if parsed.get_backend_name() not in ("sqlite", "postgresql"):
            raise DatabaseUnavailable(
                f"Hallmark runs on SQLite or PostgreSQL, not {parsed.get_backend_name()!r}.",
                hint="Set HALLMARK_DATABASE_URL to e.g. postgresql+psycopg://user@host/db or leave it unset.",
            )
        if self.is_sqlite:
            self.engine: Engine = create_engine(
                parsed, connect_args={"check_same_thread": False, "timeout": 30}, pool_pre_ping=True
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=10)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends normally, rolled back on any error."""
        session = Session(self.engine, expire_on_commit=False)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _alembic_config(self) -> Config:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        return config

    def migrate(self) -> str | None:
        """Bring the schema to the newest revision (idempotent). Returns the revision it started from (None for an
        empty database), so that `hallmark init` can say whether it created, upgraded or only checked it."""
        config = self._alembic_config()
        try:
            with self.engine.begin() as connection:
                before = MigrationContext.configure(connection).get_current_revision()
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
            return before
        except OperationalError as exc:
            if self.is_sqlite:
                raise DatabaseUnavailable(
                    f"Cannot create the SQLite database {self._sqlite_path()}: {exc.orig}",
                    hint="Check that its directory (the data dir, HALLMARK_DATA_DIR) exists and is writable.",
                ) from exc
            raise DatabaseUnavailable(
                f"Cannot reach the database to create its schema: {exc.orig}",
                hint="Check HALLMARK_DATABASE_URL and that the server is running.",
            ) from exc

    def _sqlite_path(self) -> str:
        return self.engine.url.database or "(in memory)"

    def head_revision(self) -> str | None:
        return ScriptDirectory.from_config(self._alembic_config()).get_current_head()

    def require_schema(self) -> None:
        """Fail with a clear message when `hallmark init` (or a needed migration) has not run."""
        head = self.head_revision()
        try:
            with self.engine.connect() as connection:
                current = MigrationContext.configure(connection).get_current_revision()
        except OperationalError as exc:
            if self.is_sqlite:  # no server to be down: the file is missing (not initialised) or unreadable
                raise DatabaseUnavailable(
                    f"Cannot open the SQLite database {self._sqlite_path()}: {exc.orig}",
                    hint="Run `hallmark init` to create the data dir, or point HALLMARK_DATA_DIR at the initialised "
                         "one.",
                ) from exc
            raise DatabaseUnavailable(
                f"Cannot reach the database: {exc.orig}",
                hint="Check HALLMARK_DATABASE_URL and that the server is running.",
            ) from exc
        if current != head:
            raise DatabaseUnavailable(
                "The database schema is missing or out of date "
                f"(at {current or 'nothing'}, needs {head}).",
                hint="Run `hallmark init` (it migrates an existing database in place).",
            )

    def checkpoint(self) -> None:
        """SQLite: copy the write-ahead log into the database file and empty it, so erased rows (with
        secure_delete) leave no older copy of their pages behind in the WAL. PostgreSQL: nothing to do here."""
        if self.is_sqlite:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    def dispose(self) -> None:
        stop_integration(self.engine)
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # WAL lets readers (status polls, verify) run while a worker writes; NORMAL sync is safe with WAL.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
