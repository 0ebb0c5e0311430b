"""The in-memory matcher over every registered work, kept current with the registry at low cost.

Building the matcher for 20,000 works and 100,000 aliases takes seconds, so it is built once per process (at some
registry revision) and then *layered*: a small matcher over the works changed since (added, edited, removed) is
rebuilt whenever the revision moves, and the big one's matches for those works are dropped. When the layer grows
past `max_delta` works, the big one is rebuilt. Every check therefore sees the registry as of its own read of the
revision counter (see registry.works), never a stale copy."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from guard.gate.matching import ImageHashes, Match, MatchSettings, Query, Term, TermMatcher, from_bytes
from registry import WorkRecord, Works


def term_of(record: WorkRecord) -> Term:
    vectors = np.vstack([from_bytes(blob) for _, blob in record.descriptions]) if record.descriptions else None
    return Term(key=record.work.id, aliases=tuple(record.aliases),
                descriptions=tuple(text for text, _ in record.descriptions), description_vectors=vectors,
                images=tuple((label, ImageHashes.from_hex(hashes)) for label, _, hashes in record.images))


@dataclass(frozen=True)
class LayeredMatcher:
    revision: int
    base: TermMatcher
    delta: TermMatcher | None
    changed: frozenset[str]  # works whose base entries are out of date

    def match(self, query: Query) -> list[Match]:
        matches = [m for m in self.base.match(query) if m.key not in self.changed]
        if self.delta is not None:
            matches += self.delta.match(query)
        return matches


class WorksIndexCache:
    def __init__(self, settings: MatchSettings, *, max_delta: int = 256, background: np.ndarray | None = None) -> None:
        self.settings = settings
        self.background = background
        self.max_delta = max_delta
        self._lock = threading.Lock()
        self._base: TermMatcher | None = None
        self._base_revision = -1
        self._current: LayeredMatcher | None = None

    def matcher(self, works: Works) -> LayeredMatcher:
        revision = works.revision()
        current = self._current
        if current is not None and current.revision == revision:
            return current
        with self._lock:
            current = self._current
            if current is not None and current.revision == revision:
                return current
            if self._base is None:
                self._rebuild(works, revision)
            else:
                changed = works.records(since=self._base_revision)
                if len(changed) > self.max_delta:
                    self._rebuild(works, revision)
                else:
                    live = [term_of(r) for r in changed if r.work.removed_at is None]
                    live_matcher = TermMatcher(live, self.settings, background=self.background) if live else None
                    self._current = LayeredMatcher(revision, self._base, live_matcher,
                                                   frozenset(r.work.id for r in changed))
            assert self._current is not None
            return self._current

    def _rebuild(self, works: Works, revision: int) -> None:
        base = TermMatcher([term_of(r) for r in works.records()], self.settings, background=self.background)
        self._base, self._base_revision = base, revision
        self._current = LayeredMatcher(revision, base, None, frozenset())
