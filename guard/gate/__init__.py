"""The gate: consent (cameos) and policy (works, protected persons, Cedar rules) checks that decide before anything
is generated, and again before release."""

from guard.gate.decision import Decision, Reason
from guard.gate.directory import GateDirectory, RegistryDirectory
from guard.gate.facts import CameoFacts, GateFacts, LicenceFacts, PersonFacts, Subject, Thresholds, WorkFacts
from guard.gate.gate import Gate, GateRequest, mentioned_handles
from guard.gate.policy import Policy, PolicyError
from guard.gate.policy_version import policy_version
from guard.gate.works_index import WorksIndexCache

__all__ = ["CameoFacts", "Decision", "Gate", "GateDirectory", "GateFacts", "GateRequest", "LicenceFacts",
           "PersonFacts", "Policy", "PolicyError", "Reason", "RegistryDirectory", "Subject", "Thresholds",
           "WorkFacts", "WorksIndexCache", "mentioned_handles", "policy_version"]
