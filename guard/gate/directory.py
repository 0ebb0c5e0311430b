"""The narrow view of the registry the gate decides from. The gate sees facts, never sessions or tables, so it can
be tested with a plain in-memory directory and deepened without touching persistence."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from sqlmodel import Session

from guard.gate.facts import CameoFacts, LicenceFacts, Thresholds, WorkFacts
from guard.gate.matching import Match, Query
from guard.gate.works_index import WorksIndexCache
from registry import Accounts, Cameo, Cameos, Works
from registry.cameos import VERIFIED, CameoStatus
from registry.clock import as_utc


class WorksMatcher(Protocol):
    def match(self, query: Query) -> list[Match]: ...


class GateDirectory(Protocol):
    def account_role(self, account_id: str) -> str: ...

    def cameo(self, handle: str) -> CameoFacts | None: ...

    def person_cameo(self, handle: str) -> CameoFacts | None:
        """The cameo `handle` as a protected person's own: only one an operator enrolled (consent checked in person),
        never a self-service registration, which anyone could make under that handle with any face."""
        ...

    def works_matcher(self) -> WorksMatcher: ...

    def works(self, work_ids: Iterable[str], defaults: Thresholds) -> dict[str, WorkFacts]:
        """Live works among `work_ids` (removed or unknown ones are left out)."""
        ...

    def licences(self, account_id: str, work_ids: Iterable[str]) -> list[LicenceFacts]: ...


class RegistryDirectory:
    """`GateDirectory` over a registry session and the process's works index."""

    def __init__(self, session: Session, works_index: WorksIndexCache) -> None:
        self.session = session
        self.works_index = works_index

    def account_role(self, account_id: str) -> str:
        account = Accounts(self.session).get(account_id)
        return account.role

    def cameo(self, handle: str) -> CameoFacts | None:
        cameo = Cameos(self.session).by_handle(handle)
        return self._facts(cameo) if cameo is not None else None

    def person_cameo(self, handle: str) -> CameoFacts | None:
        cameo = Cameos(self.session).by_handle(handle)
        if cameo is None or cameo.status != CameoStatus.verified_by_operator:
            return None  # a deleted one too: the person is then protected like anyone without a cameo
        return self._facts(cameo)

    def _facts(self, cameo: Cameo) -> CameoFacts:
        cameos = Cameos(self.session)
        return CameoFacts(
            id=cameo.id, handle=cameo.handle, owner_id=cameo.owner_id, visibility=cameo.visibility,
            approved_accounts=frozenset(cameos.approved_accounts(cameo.id)),
            # Each way a cameo can be unusable is its own fact, so that the denial names the right one (the
            # policies allow a cameo only when it is verified, not revoked and not expired: Cameos.is_usable).
            revoked=cameo.revoked_at is not None or cameo.deleted_at is not None,
            verified=cameo.status in VERIFIED,
            expired=Cameos.is_expired(cameo),
            restricted_terms=tuple((cameo.content_restrictions or {}).get("terms", [])),
            restricted_categories=tuple((cameo.content_restrictions or {}).get("categories", [])),
        )

    def works_matcher(self) -> WorksMatcher:
        return self.works_index.matcher(Works(self.session))

    def works(self, work_ids: Iterable[str], defaults: Thresholds) -> dict[str, WorkFacts]:
        out: dict[str, WorkFacts] = {}
        for work in Works(self.session).by_ids(work_ids).values():
            if work.removed_at is not None:
                continue
            out[work.id] = WorkFacts(
                id=work.id, name=work.name, kind=work.kind, mode=work.mode, holder_id=work.holder_id,
                thresholds=defaults.replace(semantic=work.semantic_threshold),
                valid_from=as_utc(work.valid_from), valid_until=as_utc(work.valid_until),
            )
        return out

    def licences(self, account_id: str, work_ids: Iterable[str]) -> list[LicenceFacts]:
        return [LicenceFacts(id=l.id, work_id=l.work_id, non_commercial=l.non_commercial,
                             starts_at=as_utc(l.starts_at), ends_at=as_utc(l.ends_at))
                for l in Works(self.session).licences_for(account_id, work_ids)]
