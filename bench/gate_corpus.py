"""The evasion corpus (tests/data/evasion_corpus.json): sample works, prompts that disguise them, and benign
look-alikes. Shared by the test that asserts the targets and by `python -m bench.gate`."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard.gate import Decision, Gate, GateRequest, Policy
from guard.gate.memory import MemoryDirectory, MemoryWork

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "evasion_corpus.json"
REQUESTER = "corpus-requester"


def load_corpus(path: Path = CORPUS) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def sample_works(corpus: dict[str, Any]) -> list[MemoryWork]:
    return [MemoryWork(id=f"sample-{i}", name=w["name"], holder_id=w["holder"], aliases=tuple(w.get("aliases", [])),
                       descriptions=tuple(w.get("descriptions", [])), kind=w.get("kind", "character"))
            for i, w in enumerate(corpus["works"])]


def memory_gate(policy: Policy, corpus: dict[str, Any]) -> Gate:
    directory = MemoryDirectory(settings=policy.match_settings, background=policy.background_vectors())
    for work in sample_works(corpus):
        directory.add_work(work)
    return Gate(directory, policy)


@dataclass
class Outcome:
    prompt: dict[str, Any]
    decision: Decision
    seconds: float

    @property
    def denied_works(self) -> set[str]:
        return {r.subject.removeprefix("work:") for r in self.decision.reasons if r.subject}  # person:NAME stays

    @property
    def correct(self) -> bool:
        if self.prompt["label"] == "benign":
            return self.decision.allowed
        return self.prompt["work"] in self.denied_works  # denied, and for the right work


@dataclass
class Scores:
    outcomes: list[Outcome] = field(default_factory=list)

    def split(self, name: str) -> "Scores":
        """`dev` (the prompts the matcher was tuned on) or `holdout` (written afterwards, never tuned on)."""
        return Scores([o for o in self.outcomes if o.prompt.get("split", "dev") == name])

    @property
    def evasions(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.prompt["label"] == "evasion"]

    @property
    def benign(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.prompt["label"] == "benign"]

    @property
    def recall(self) -> float:
        return sum(o.correct for o in self.evasions) / max(1, len(self.evasions))

    @property
    def false_positive_rate(self) -> float:
        return sum(not o.decision.allowed for o in self.benign) / max(1, len(self.benign))

    def by_technique(self) -> dict[str, tuple[int, int]]:
        table: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for outcome in self.evasions:
            row = table[outcome.prompt["technique"]]
            row[0] += outcome.correct
            row[1] += 1
        return {k: (v[0], v[1]) for k, v in sorted(table.items())}

    def misses(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.correct]


def evaluate(gate: Gate, corpus: dict[str, Any], requester: str = REQUESTER) -> Scores:
    scores = Scores()
    for prompt in corpus["prompts"]:
        start = time.perf_counter()
        decision = gate.check(GateRequest(requester_id=requester, prompt=prompt["prompt"]))
        scores.outcomes.append(Outcome(prompt, decision, time.perf_counter() - start))
    return scores
