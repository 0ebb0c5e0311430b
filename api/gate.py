"""The gate's dry run, shared by `POST /v1/gate/check` and `hallmark gate check`."""

from __future__ import annotations

from sqlmodel import Session

from api.context import Hallmark
from api.likeness import REFERENCE_IMAGE, face_decision, reference_findings
from guard.errors import InvalidInput
from guard.gate import Decision, GateRequest
from guard.likeness.output import OutputFinding
from registry import (Account, Accounts, AppearanceKind, Appearances, AuditLog, Generation, Generations, Role,
                      Status)


def dry_run(hm: Hallmark, account: Account, prompt: str, *, cameos: list[str] = (),  # type: ignore[assignment]
            commercial: bool = False, reference_image: bytes | None = None,
            as_account: str | None = None, negative_prompt: str | None = None) -> Decision:
    prompt = prompt.strip()
    if not prompt:
        raise InvalidInput("The prompt is empty.", hint="Give the prompt to check.")
    if len(prompt) > hm.settings.max_prompt_chars:
        raise InvalidInput(f"The prompt is {len(prompt)} characters long; the limit is "
                           f"{hm.settings.max_prompt_chars}.")
    faces = reference_findings(hm, reference_image)  # a bad image is the caller's error (4xx), not a denial
    with hm.db.session() as session:
        requester = account
        if as_account and as_account != account.name:
            if account.role != Role.admin:
                raise InvalidInput("Only admins may check a request as another account.", code="forbidden",
                                   status=403)
            requester = Accounts(session).require_by_name(as_account)
        request = GateRequest(requester_id=requester.id, prompt=prompt, cameo_handles=list(cameos),
                              commercial=commercial, reference_image=reference_image,
                              negative_prompt=negative_prompt)
        # Operators (admins manage every cameo) see whose face it is; anyone else is told only that someone is.
        outcome = face_decision(hm, session, request, faces, REFERENCE_IMAGE, reveal=account.role == Role.admin)
        decision = outcome.decision
        recorded = record_hidden_matches(session, account, prompt, decision, outcome.hidden,
                                         checked_as=requester.name if requester is not account else None)
        AuditLog(session).append("gate.checked", actor_id=account.id, subject=requester.id,
                                 allowed=decision.allowed, policy_version=decision.policy_version,
                                 reasons=[reason.code for reason in decision.reasons], recorded_as=recorded)
    return decision


def record_hidden_matches(session: Session, actor: Account, prompt: str, decision: Decision,
                          hidden: list[OutputFinding], *, checked_as: str | None) -> str | None:
    """A dry run whose reference image shows someone's cameo they have not shared with the checker is an attempt
    to use that likeness (or a search for it): it is recorded as a denied request, with the cameo's appearance,
    so the owner sees it (who, when, how alike) as they see every other attempt. The checker is told nothing more
    than the answer they already got, which is what the record holds. Returns the record's id."""
    if not hidden:
        return None
    params: dict[str, object] = {"dry_run": True, "reference_image": True}
    if checked_as:
        params["checked_as"] = checked_as
    record = Generations(session).add(Generation(
        requester_id=actor.id, prompt=prompt, params=params, decision=decision.as_dict(),
        policy_version=decision.policy_version, status=Status.denied))
    appearances = Appearances(session)
    for finding in hidden:
        appearances.record(finding.match.subject_id, record.id, actor.id, AppearanceKind.reference_image, "denied",
                           ["likeness_without_consent"], similarity=finding.match.similarity)
    return record.id
