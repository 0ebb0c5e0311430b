"""The evasion corpus (tests/data/evasion_corpus.json): >= 200 labelled prompts against sample works. Disguised
prompts must be denied for the right work (recall >= 95 %), benign look-alikes must pass (<= 2 % false positives).
The whole gate runs: normalization, every matcher, the Cedar policies."""

from __future__ import annotations

from bench.gate_corpus import evaluate, load_corpus, memory_gate
from guard.gate import GateRequest, Policy
from policies import POLICY_DIR


def test_recall_and_false_positives_meet_the_targets() -> None:
    corpus = load_corpus()
    assert len(corpus["prompts"]) >= 200
    scores = evaluate(memory_gate(Policy.load(POLICY_DIR), corpus), corpus)
    report = {name: (round(part.recall, 3), round(part.false_positive_rate, 3), len(part.outcomes))
              for name in ("dev", "holdout", "holdout2") for part in [scores.split(name)]}
    misses = [(o.prompt["prompt"], [r.code for r in o.decision.reasons]) for o in scores.misses()]
    assert len(scores.evasions) >= 150 and len(scores.benign) >= 100
    assert scores.recall >= 0.95, (report, misses)
    assert scores.false_positive_rate <= 0.02, (report, misses)
    assert all(outcome.decision.reasons[0].code != "check_unavailable" for outcome in scores.outcomes
               if outcome.decision.reasons)


def test_translated_names_match_only_when_the_work_lists_them() -> None:
    """The matcher folds spelling, not language: a translation is caught because the sample work lists it as an alias
    (or it is a near miss of one: "Мики Маус" for the listed "Микки Маус"); paraphrases are English-only."""
    corpus = load_corpus()
    gate = memory_gate(Policy.load(POLICY_DIR), corpus)
    for prompt, work in [("米老鼠 waving", "Mickey Mouse"), ("ミッキーマウス waving", "Mickey Mouse"),
                         ("Мики Маус waving", "Mickey Mouse"), ("Человек-паук swinging", "Spider-Man"),
                         ("Hombre Araña swinging", "Spider-Man")]:
        decision = gate.check(GateRequest("bob", prompt))
        assert [(r.code, r.subject) for r in decision.reasons] == [("opted_out_work", f"work:{work}")], prompt
