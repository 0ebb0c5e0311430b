"""What the gate answers: allowed or not, every reason (machine code + human message + subject), obligations
for the rest of the pipeline, and the version of the policy that decided."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reason:
    code: str  # stable, machine-readable, e.g. "cameo_not_permitted"
    message: str  # for a person
    subject: str | None = None  # what it is about, e.g. "@alice" or "work:Mickey Mouse"
    evidence: dict[str, Any] | None = None  # e.g. the matched span and score

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "subject": self.subject, "evidence": self.evidence}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reasons: list[Reason]
    policy_version: str
    obligations: list[dict[str, Any]] = field(default_factory=list)
    cameo_ids: list[str] = field(default_factory=list)  # cameos used with consent (go into the manifest)

    def as_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "reasons": [reason.as_dict() for reason in self.reasons],
            "obligations": self.obligations,
            "policy_version": self.policy_version,
            "cameo_ids": self.cameo_ids,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Decision":
        return cls(
            allowed=bool(data.get("allowed")),
            reasons=[Reason(**reason) for reason in data.get("reasons", [])],
            policy_version=data.get("policy_version", ""),
            obligations=list(data.get("obligations", [])),
            cameo_ids=list(data.get("cameo_ids", [])),
        )
