"""A `GateDirectory` held in memory: for the evasion corpus, the benchmarks and tests that exercise the real matchers
and policies without a database."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from guard.gate.facts import CameoFacts, LicenceFacts, Thresholds, WorkFacts
from guard.gate.matching import Match, MatchSettings, Query, Term, TermMatcher


@dataclass
class MemoryWork:
    id: str
    name: str
    holder_id: str
    aliases: tuple[str, ...] = ()
    descriptions: tuple[str, ...] = ()
    kind: str = "character"
    mode: str = "opt_out"
    semantic_threshold: float | None = None


@dataclass
class MemoryDirectory:
    works_by_id: dict[str, MemoryWork] = field(default_factory=dict)
    roles: dict[str, str] = field(default_factory=dict)
    cameos: dict[str, CameoFacts] = field(default_factory=dict)
    operator_enrolled: set[str] = field(default_factory=set)  # handles of cameos an operator enrolled
    licences_by_account: dict[str, list[LicenceFacts]] = field(default_factory=dict)
    settings: MatchSettings = MatchSettings()
    background: np.ndarray | None = None
    _matcher: TermMatcher | None = None

    def add_work(self, work: MemoryWork) -> None:
        self.works_by_id[work.id] = work
        self._matcher = None

    def account_role(self, account_id: str) -> str:
        return self.roles.get(account_id, "creator")

    def cameo(self, handle: str) -> CameoFacts | None:
        return self.cameos.get(handle.lower().lstrip("@"))

    def person_cameo(self, handle: str) -> CameoFacts | None:
        """As the database directory: only a cameo an operator enrolled can be a protected person's own."""
        key = handle.lower().lstrip("@")
        return self.cameos.get(key) if key in self.operator_enrolled else None

    def works_matcher(self) -> "MemoryDirectory":
        if self._matcher is None:
            self._matcher = TermMatcher([Term(w.id, aliases=(w.name, *w.aliases), descriptions=w.descriptions)
                                         for w in self.works_by_id.values()], self.settings,
                                        background=self.background)
        return self

    def match(self, query: Query) -> list[Match]:
        assert self._matcher is not None
        return self._matcher.match(query)

    def works(self, work_ids: Iterable[str], defaults: Thresholds) -> dict[str, WorkFacts]:
        out = {}
        for work_id in work_ids:
            work = self.works_by_id.get(str(work_id))
            if work is not None:
                out[work.id] = WorkFacts(work.id, work.name, work.kind, work.mode, work.holder_id,
                                         defaults.replace(semantic=work.semantic_threshold))
        return out

    def licences(self, account_id: str, work_ids: Iterable[str]) -> list[LicenceFacts]:
        wanted = set(work_ids)
        return [l for l in self.licences_by_account.get(account_id, []) if l.work_id in wanted]
