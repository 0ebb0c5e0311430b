"""Developer tool: autogenerate a migration from the tables' current definitions.

    python registry/migrations/new_revision.py "add works" --rev 0002_works

It diffs the models against a scratch SQLite database migrated to the current head, so nothing real is touched.
Review the generated file before committing it (autogenerate misses renames and server defaults)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402

from registry.database import MIGRATIONS, Database  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("message")
    parser.add_argument("--rev", required=True, help="revision id, e.g. 0002_works")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        database = Database(f"sqlite:///{scratch}/scratch.db")
        database.migrate()
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.revision(config, message=args.message, autogenerate=True, rev_id=args.rev)
        database.dispose()


if __name__ == "__main__":
    main()
