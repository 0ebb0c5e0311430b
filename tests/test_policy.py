"""Policy-as-code: the shipped policies validate and pass their case table; broken files are refused with their file
and line; the gate fails closed; the policy version covers the lists."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from guard.gate import Gate, GateRequest, Policy, PolicyError
from guard.gate.memory import MemoryDirectory, MemoryWork
from guard.gate.policy import run_cases, split_statements
from policies import POLICY_DIR


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.load(POLICY_DIR)


@pytest.fixture
def policy_copy(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return target


def test_shipped_policies_validate_and_every_case_passes(policy: Policy) -> None:
    results = run_cases(policy)
    assert len(results) >= 25
    failed = [(r.name, r.expected, r.got) for r in results if not r.passed]
    assert failed == []
    assert {"opted_out_work", "unlicensed_work", "protected_person", "cameo_unknown", "cameo_not_permitted",
            "cameo_revoked", "cameo_not_verified", "cameo_expired"} <= {rule.reason for rule in policy.rules.values()}


def test_a_wrong_expectation_is_reported_as_a_failure(policy: Policy, tmp_path: Path) -> None:
    cases = tmp_path / "cases.toml"
    cases.write_text('[[case]]\nname = "wrong"\nexpect_allowed = true\n[[case.work]]\nid = "w"\n'
                     'scores = { exact = 1.0 }\n')
    [result] = run_cases(policy, cases)
    assert not result.passed and result.got == {"allowed": False, "reasons": ["opted_out_work"]}


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), start=1) if needle in line)


def test_a_syntax_error_names_file_and_line(policy_copy: Path) -> None:
    cameos = policy_copy / "cameos.cedar"
    cameos.write_text(cameos.read_text().replace('unless { resource.registered };', 'unless { resource.registered ;'))
    with pytest.raises(PolicyError) as error:
        Policy.load(policy_copy)
    line = _line_of(cameos, '@id("cameo.unknown")')
    assert f"cameos.cedar:{line}:" in error.value.message
    assert "syntax error" in error.value.message


def test_a_schema_error_names_file_and_line(policy_copy: Path) -> None:
    works = policy_copy / "works.cedar"
    works.write_text(works.read_text().replace('resource.mode == "licensed" &&\n  principal',
                                               'resource.moed == "licensed" &&\n  principal', 1))
    with pytest.raises(PolicyError) as error:
        Policy.load(policy_copy)
    line = _line_of(works, '@id("work.unlicensed")')
    assert f"works.cedar:{line}:" in error.value.message
    assert "moed" in error.value.message


@pytest.mark.parametrize("edit,expected", [
    (lambda t: t.replace('@reason("cameo_revoked")\n', ""), "needs @reason"),
    (lambda t: t.replace('@id("cameo.revoked")', '@id("cameo.unknown")'), "already used"),
    (lambda t: t + '\n@id("x")\n@obligation("confetti")\npermit (principal, action, resource);\n', "confetti"),
])
def test_bad_annotations_are_refused(policy_copy: Path, edit, expected: str) -> None:  # type: ignore[no-untyped-def]
    cameos = policy_copy / "cameos.cedar"
    cameos.write_text(edit(cameos.read_text()))
    with pytest.raises(PolicyError, match=expected):
        Policy.load(policy_copy)


def test_a_broken_schema_or_list_is_refused(policy_copy: Path) -> None:
    (policy_copy / "protected_persons.toml").write_text("[[person]]\nname = 'no id'\n")
    with pytest.raises(PolicyError, match="protected_persons.toml"):
        Policy.load(policy_copy)
    shutil.copy(POLICY_DIR / "protected_persons.toml", policy_copy / "protected_persons.toml")
    (policy_copy / "schema.cedarschema").write_text("namespace Hallmark { entity }")
    with pytest.raises(PolicyError, match="schema.cedarschema"):
        Policy.load(policy_copy)


def test_the_version_covers_policies_and_lists(policy_copy: Path) -> None:
    before = Policy.load(policy_copy).version
    with (policy_copy / "protected_persons.toml").open("a") as handle:
        handle.write('\n[[person]]\nid = "someone"\nname = "Some One"\n')
    after = Policy.load(policy_copy)
    assert after.version != before and after.version.startswith("sha256:")
    assert "Some One" in [p.name for p in after.persons]


def test_split_statements_ignores_semicolons_in_strings_and_comments() -> None:
    text = '// a; comment\n@id("a")\n@message("x; y")\npermit (principal, action, resource);\n\n' \
           'forbid (principal, action, resource);'
    assert [line for line, _ in split_statements(text)] == [2, 6]


class _Broken(MemoryDirectory):
    def works_matcher(self):  # type: ignore[no-untyped-def]
        raise RuntimeError("index unavailable")


def test_the_gate_fails_closed(policy: Policy) -> None:
    decision = Gate(_Broken(), policy).check(GateRequest("alice", "a quiet lake"))
    assert not decision.allowed
    assert [r.code for r in decision.reasons] == ["check_unavailable"]
    assert "index unavailable" in decision.reasons[0].message and decision.policy_version == policy.version


def test_a_protected_person_is_blocked_in_any_spelling(policy: Policy) -> None:
    gate = Gate(MemoryDirectory(), policy)
    for prompt in ("Barack Obama giving a speech", "B4r4ck 0bama at the beach", "Барак Обама"):
        decision = gate.check(GateRequest("alice", prompt))
        assert [r.code for r in decision.reasons] == ["protected_person"], prompt
        assert decision.reasons[0].subject == "person:Barack Obama"
    assert gate.check(GateRequest("alice", "a president's desk in an office")).allowed


def test_reasons_name_the_work_and_carry_the_evidence(policy: Policy) -> None:
    directory = MemoryDirectory(settings=policy.match_settings)
    directory.add_work(MemoryWork("w1", "Mickey Mouse", "studio", aliases=("Topolino",)))
    decision = Gate(directory, policy).check(GateRequest("alice", "Topolino e Minnie al mare"))
    [reason] = decision.reasons
    assert reason.code == "opted_out_work" and reason.subject == "work:Mickey Mouse"
    assert "Mickey Mouse" in reason.message
    assert reason.evidence["kind"] == "exact" and reason.evidence["span"] == [0, 8]
    assert reason.evidence["text"] == "Topolino" and reason.evidence["score"] == 1.0
    assert reason.evidence["policy"] == "work.opted_out"
