"""The gate's dry run, shared by `POST /v1/gate/check` and `hallmark gate check`."""

from __future__ import annotations

from api.context import Hallmark
from api.likeness import REFERENCE_IMAGE, decide_with_faces, reference_findings
from guard.errors import InvalidInput
from guard.gate import Decision, GateRequest
from registry import Account, Accounts, AuditLog, Role


def dry_run(hm: Hallmark, account: Account, prompt: str, *, cameos: list[str] = (),  # type: ignore[assignment]
            commercial: bool = False, reference_image: bytes | None = None,
            as_account: str | None = None) -> Decision:
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
                              commercial=commercial, reference_image=reference_image)
        decision = decide_with_faces(hm, session, request, faces, REFERENCE_IMAGE)
        AuditLog(session).append("gate.checked", actor_id=account.id, subject=requester.id,
                                 allowed=decision.allowed, policy_version=decision.policy_version,
                                 reasons=[reason.code for reason in decision.reasons])
    return decision
