"""The works index over the registry: built once, then kept current through the revision counter (additions,
edits and removals are seen by the very next check), on SQLite and PostgreSQL."""

from __future__ import annotations

from guard.gate import WorksIndexCache
from guard.gate.matching import MatchSettings, Query, embedder, to_bytes
from registry import Accounts, Database, NewWork, Role, Works


def _add(database: Database, holder_id: str, name: str, *aliases: str, description: str | None = None) -> str:
    descriptions = [(description, to_bytes(embedder().encode([description])[0]))] if description else []
    with database.session() as session:
        return Works(session).add(NewWork(holder_id=holder_id, name=name, aliases=aliases,
                                          descriptions=descriptions)).id


def test_the_index_follows_the_registry(database_url: str) -> None:
    database = Database(database_url)
    database.migrate()
    with database.session() as session:
        holder = Accounts(session).create("studio", Role.rights_holder).id
    first = _add(database, holder, "Mickey Mouse", "Topolino",
                 description="a cheerful cartoon mouse with red shorts and round black ears")
    cache = WorksIndexCache(MatchSettings(), max_delta=2)

    def keys(prompt: str) -> set[str]:
        with database.session() as session:
            return {m.key for m in cache.matcher(Works(session)).match(Query.of(prompt))}

    assert keys("Topolino al mare") == {first}
    base = cache._base
    second = _add(database, holder, "Pikachu")
    assert keys("P1kachu in the rain") == {second}
    assert cache._base is base  # served by the small layer, not a rebuild
    with database.session() as session:
        works = Works(session)
        works.extend(works.get(first), aliases=["Mikki Hiiri"])
    assert keys("Mikki Hiiri laulaa") == {first}
    assert keys("a cartoon mouse with red shorts and round ears") == {first}  # its description survives the edit
    with database.session() as session:
        works = Works(session)
        works.remove(works.get(first))
        revision = works.revision()
    assert keys("Topolino al mare") == set()
    with database.session() as session:
        assert cache.matcher(Works(session)).revision == revision
    for name in ("Shrek", "Batman", "Elsa of Arendelle"):  # past max_delta: the base is rebuilt
        _add(database, holder, name)
    assert keys("Shrek and Batman") != set() and cache._base is not base
    assert keys("Topolino al mare") == set() and keys("Pikachu") == {second}
    database.dispose()
