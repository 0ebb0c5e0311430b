"""Shared fixtures: real SQLite and real PostgreSQL databases, an initialized data dir, the wired application,
an HTTP client through the ASGI app, and the real footage in ../shared/media.

PostgreSQL: every test session gets its own schema in the `test` database on 127.0.0.1:5432 (trust auth), so
parallel runs do not see each other's rows; the schema is dropped at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
MEDIA = (ROOT.parent / "shared" / "media").resolve()
POSTGRES_ADMIN_URL = os.environ.get("HALLMARK_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


# --- real footage ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def media_dir() -> Path:
    if not MEDIA.is_dir():
        pytest.skip(f"the real footage folder {MEDIA} is absent (see ../shared/media/README.md)")
    return MEDIA


# --- databases ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh schema in the local PostgreSQL `test` database; the URL points its search_path there."""
    from sqlalchemy import create_engine, text

    schema = f"hm_test_{uuid.uuid4().hex[:10]}"
    engine = create_engine(POSTGRES_ADMIN_URL)
    try:
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # a missing server is an environment problem, reported as such
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({exc}); .ci/run starts it, or start "
                    "it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start")
    yield f"{POSTGRES_ADMIN_URL}?options=-csearch_path%3D{schema}"
    with engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each test using it runs twice: on a SQLite file and on PostgreSQL (a schema emptied for the test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hallmark.db'}"
        return
    url = request.getfixturevalue("postgres_url")
    _empty_schema(url)
    yield url


def _empty_schema(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        schema = connection.execute(text("SELECT current_schema()")).scalar_one()
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine.dispose()


# --- the tiny model, built once per session -------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from generator.tiny import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny-wan")


# --- an initialized Hallmark ----------------------------------------------------------------------------------
class Initialized:
    def __init__(self, settings, admin_key: str) -> None:  # type: ignore[no-untyped-def]
        self.settings = settings
        self.admin_key = admin_key

    @property
    def env(self) -> dict[str, str]:
        """Environment for running the CLI as a subprocess against this data dir and database."""
        env = {**os.environ, "HALLMARK_DATA_DIR": str(self.settings.data_dir),
               "HALLMARK_DATABASE_URL": self.settings.resolved_database_url, "PYTHONPATH": str(ROOT)}
        env.pop("HALLMARK_CONFIG", None)
        return env


def generation_count(initialized: Initialized) -> int:
    """Generation records in the database, counted directly (not through the API under test)."""
    from sqlmodel import func, select

    from registry import Database, Generation

    database = Database(initialized.settings.resolved_database_url)
    with database.session() as session:
        count = session.exec(select(func.count()).select_from(Generation)).one()
    database.dispose()
    return int(count)


def make_settings(data_dir: Path, database_url: str, **overrides):  # type: ignore[no-untyped-def]
    from api.settings import Settings

    return Settings(data_dir=data_dir, database_url=database_url, **overrides)


@lru_cache(maxsize=1)
def exported_embedding_model() -> Path | None:
    """The gate's ONNX export of the sentence-embedding model, made once per test session. Every test data dir gets
    a hard link to it, as a deployment's data dir keeps its own: otherwise each CLI subprocess on a fresh data dir
    would spend ~30 s exporting it again. None if the export is unavailable (the embedder then uses torch)."""
    from guard.gate.matching.semantic import Embedder, model_path

    directory = Path(tempfile.mkdtemp(prefix="hallmark-test-onnx-"))
    try:
        Embedder(model_path(), backend="onnx", cache=directory)
    except Exception:
        return None
    exported = sorted(directory.glob("*.onnx"))
    return exported[0] if exported else None


def initialize_at(data_dir: Path, database_url: str, tiny_model: Path, **overrides) -> Initialized:
    from api.bootstrap import initialize

    target = data_dir / "models" / "tiny-wan"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(tiny_model, target)
    onnx = exported_embedding_model()
    if onnx is not None:
        try:
            os.link(onnx, target.parent / onnx.name)
        except OSError:  # another file system: a copy does the same
            shutil.copyfile(onnx, target.parent / onnx.name)
    settings = make_settings(data_dir, database_url, **overrides)
    result = initialize(settings)
    assert result.admin_key is not None
    return Initialized(settings, result.admin_key)


@pytest.fixture
def initialized(tmp_path: Path, database_url: str, tiny_model: Path) -> Initialized:
    return initialize_at(tmp_path / "data", database_url, tiny_model)


@pytest.fixture
def sqlite_initialized(tmp_path: Path, tiny_model: Path) -> Initialized:
    """For tests whose subject is not the database: SQLite only."""
    return initialize_at(tmp_path / "data", f"sqlite:///{tmp_path / 'hallmark.db'}", tiny_model)


@pytest.fixture
def hm(initialized: Initialized):  # type: ignore[no-untyped-def]
    from api.context import Hallmark

    context = Hallmark(initialized.settings)
    yield context
    context.close()


def run_cli(args: list[str], env: dict[str, str], *, cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run `hallmark ARGS` in a subprocess, from this checkout (python -m api.cli), and capture its output."""
    return subprocess.run([sys.executable, "-m", "api.cli", *args], env=env, cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout)
