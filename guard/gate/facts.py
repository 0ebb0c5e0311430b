"""The facts the gate decides from, as plain dataclasses, and their Cedar form (entities + one request per subject).

A *subject* is something the request may depict: a work or a protected person the prompt (or reference image)
matched, or a cameo it mentions. Each subject carries how it came up (`via`), its best score per match kind, the
matches themselves (for the evidence in reasons) and, for works, the requester's licences. Likeness checks (faces in
a reference image or in output frames) add subjects the same way: a `Person` or `Cameo` subject with via
`reference_image`/`output_frames` and a `face` score; the policies already have the slot."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from guard.gate.matching import Match

SCORE_KINDS = ("exact", "fuzzy", "semantic", "image", "face")
THRESHOLD_KINDS = (*SCORE_KINDS, "margin", "generic")
NAMESPACE = "Hallmark"


def permille(value: float) -> int:
    return int(round(max(-1.0, min(1.0, value)) * 1000))


def seconds(value: datetime | None) -> int | None:
    return None if value is None else int(value.timestamp())


@dataclass(frozen=True)
class Thresholds:
    exact: float = 0.9
    fuzzy: float = 0.7
    semantic: float = 0.55
    image: float = 0.85
    face: float = 0.9
    margin: float = 0.05
    generic: float = 0.10

    def cedar(self) -> dict[str, int]:
        return {kind: permille(getattr(self, kind)) for kind in THRESHOLD_KINDS}

    def replace(self, **changes: float | None) -> "Thresholds":
        values = {kind: getattr(self, kind) for kind in THRESHOLD_KINDS}
        values.update({k: v for k, v in changes.items() if v is not None})
        return Thresholds(**values)


@dataclass(frozen=True)
class RequestFacts:
    requester_id: str
    requester_role: str
    now: datetime
    commercial: bool = False
    has_reference_image: bool = False
    prompt_chars: int = 0

    def cedar(self) -> dict[str, Any]:
        return {"now": seconds(self.now), "commercial": self.commercial,
                "has_reference_image": self.has_reference_image, "prompt_chars": self.prompt_chars}


@dataclass(frozen=True)
class CameoFacts:
    id: str
    handle: str
    owner_id: str
    visibility: str  # only_me | approved | everyone
    approved_accounts: frozenset[str]
    revoked: bool  # revoked or deleted by its owner
    verified: bool = False  # likeness verified by registration (the cameo issue sets it)
    expired: bool = False  # past the expires_at its owner set
    restricted_terms: tuple[str, ...] = ()  # the owner's content restrictions: words or phrases ...
    restricted_categories: tuple[str, ...] = ()  # ... and categories (policies/content_categories.toml)
    restricted_matches: int = 0  # how many of them the prompt matched (set by the gate)


@dataclass(frozen=True)
class WorkFacts:
    id: str
    name: str
    kind: str
    mode: str  # opt_out | licensed
    holder_id: str
    thresholds: Thresholds
    valid_from: datetime | None = None
    valid_until: datetime | None = None


@dataclass(frozen=True)
class PersonFacts:
    id: str
    name: str
    thresholds: Thresholds
    cameo: CameoFacts | None = None


@dataclass(frozen=True)
class LicenceFacts:
    id: str
    work_id: str
    non_commercial: bool
    starts_at: datetime | None = None
    ends_at: datetime | None = None

    def cedar(self) -> dict[str, Any]:
        record: dict[str, Any] = {"non_commercial": self.non_commercial}
        if self.starts_at is not None:
            record["starts_at"] = seconds(self.starts_at)
        if self.ends_at is not None:
            record["ends_at"] = seconds(self.ends_at)
        return record


@dataclass
class Subject:
    type: str  # Work | Person | Cameo
    id: str  # the entity id (work id, person id, cameo handle)
    name: str  # for people: what the reasons call it
    via: str  # mention | prompt | reference_image | output_frames
    scores: dict[str, float] = field(default_factory=dict)
    semantic_margin: float = 0.0
    semantic_genericity: float = 0.0  # how close the matched description is to an everyday prompt
    matches: list[Match] = field(default_factory=list)
    licences: list[LicenceFacts] = field(default_factory=list)

    @property
    def label(self) -> str:
        return {"Work": f"work:{self.name}", "Person": f"person:{self.name}"}.get(self.type, self.name)

    def evidence(self) -> dict[str, Any] | None:
        if not self.matches:
            return {"via": self.via}
        ordered = sorted(self.matches, key=lambda m: (-m.score, m.kind))
        best = ordered[0].evidence()
        best.update({"via": self.via, "id": self.id})
        if len(ordered) > 1:
            best["other_matches"] = [m.evidence() for m in ordered[1:]]
        if self.type == "Cameo":  # a cameo's matches are its owner's content restrictions: name which ones
            best["restrictions"] = sorted(str(m.key) for m in self.matches)
        return best


@dataclass
class GateFacts:
    request: RequestFacts
    works: dict[str, WorkFacts] = field(default_factory=dict)
    persons: dict[str, PersonFacts] = field(default_factory=dict)
    cameos: dict[str, CameoFacts | None] = field(default_factory=dict)  # by handle; None: no such cameo
    subjects: list[Subject] = field(default_factory=list)

    # --- the Cedar form
    def entities(self) -> list[dict[str, Any]]:
        accounts: dict[str, str] = {self.request.requester_id: self.request.requester_role}
        out: list[dict[str, Any]] = []

        def account(account_id: str) -> dict[str, Any]:
            accounts.setdefault(account_id, "")
            return _ref("Account", account_id)

        def cameo_entity(entity_id: str, cameo: CameoFacts | None) -> dict[str, Any]:
            attrs: dict[str, Any] = {"registered": cameo is not None, "visibility": "", "approved": [],
                                     "revoked": False, "verified": False, "expired": False,
                                     "restricted_matches": 0}
            if cameo is not None:
                attrs.update({"owner": account(cameo.owner_id), "visibility": cameo.visibility,
                              "approved": [account(a) for a in sorted(cameo.approved_accounts)],
                              "revoked": cameo.revoked, "verified": cameo.verified, "expired": cameo.expired,
                              "restricted_matches": cameo.restricted_matches})
            return {"uid": _uid("Cameo", entity_id), "attrs": attrs, "parents": []}

        for work in self.works.values():
            attrs: dict[str, Any] = {"name": work.name, "kind": work.kind, "mode": work.mode,
                                     "holder": account(work.holder_id), "thresholds": work.thresholds.cedar()}
            if work.valid_from is not None:
                attrs["valid_from"] = seconds(work.valid_from)
            if work.valid_until is not None:
                attrs["valid_until"] = seconds(work.valid_until)
            out.append({"uid": _uid("Work", work.id), "attrs": attrs, "parents": []})
        cameo_ids: set[str] = set()
        for handle, cameo in self.cameos.items():
            out.append(cameo_entity(f"@{handle}", cameo))
            cameo_ids.add(f"@{handle}")
        for person in self.persons.values():
            attrs = {"name": person.name, "thresholds": person.thresholds.cedar()}
            if person.cameo is not None:
                cameo_id = f"@{person.cameo.handle}"
                if cameo_id not in cameo_ids:
                    out.append(cameo_entity(cameo_id, person.cameo))
                    cameo_ids.add(cameo_id)
                attrs["cameo"] = _ref("Cameo", cameo_id)
            out.append({"uid": _uid("Person", person.id), "attrs": attrs, "parents": []})
        out.append({"uid": _uid("Request", "request"), "attrs": {}, "parents": []})
        out += [{"uid": _uid("Account", account_id), "attrs": {"role": role}, "parents": []}
                for account_id, role in accounts.items()]
        return out

    def requests(self) -> list[tuple[int, dict[str, Any]]]:
        """(subject index, Cedar request); index -1 is the request-wide `generate` check. A work with licences
        gets one request per licence, and is allowed when any of them is."""
        principal = _uid("Account", self.request.requester_id)
        request = self.request.cedar()
        out: list[tuple[int, dict[str, Any]]] = [(-1, {
            "principal": principal, "action": _uid("Action", "generate"), "resource": _uid("Request", "request"),
            "context": {"request": request, "subjects": len(self.subjects)},
        })]
        for index, subject in enumerate(self.subjects):
            context: dict[str, Any] = {
                "request": request, "via": subject.via,
                "scores": {kind: permille(subject.scores.get(kind, 0.0)) for kind in SCORE_KINDS},
                "semantic_margin": permille(subject.semantic_margin),
                "semantic_genericity": permille(subject.semantic_genericity),
            }
            base = {"principal": principal, "action": _uid("Action", "depict"),
                    "resource": _uid(subject.type, subject.id)}
            if subject.licences:
                for licence in subject.licences:
                    out.append((index, {**base, "context": {**context, "licence": licence.cedar()}}))
            else:
                out.append((index, {**base, "context": context}))
        return out


def _uid(entity_type: str, entity_id: str) -> dict[str, str]:
    return {"type": f"{NAMESPACE}::{entity_type}", "id": entity_id}


def _ref(entity_type: str, entity_id: str) -> dict[str, Any]:
    return {"__entity": _uid(entity_type, entity_id)}
