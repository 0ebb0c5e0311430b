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


# --- protected persons: distinctive names, other scripts, everyday look-alikes (the whole gate, with the model) ----
@pytest.fixture(scope="module")
def person_gate(policy: Policy) -> Gate:
    return Gate(MemoryDirectory(settings=policy.match_settings), policy)


@pytest.mark.parametrize("prompt,person", [
    ("Obama walking his dog", "Barack Obama"), ("obama walking his dog", "Barack Obama"),
    ("Trump giving a speech at a rally", "Donald Trump"), ("Biden eating ice cream", "Joe Biden"),
    ("Robots built by Musk on Mars", "Elon Musk"), ("a photo of Musk", "Elon Musk"), ("Mu$k on Mars", "Elon Musk"),
    ("a photo of MUSK", "Elon Musk"), ("M u s k on Mars", "Elon Musk"), ("Elon on Mars", "Elon Musk"),
    # quoted, bracketed or after a colon or dash the name is inside a sentence, not at its start
    ('a photo of "Musk" smiling', "Elon Musk"), ("a video of (Musk) giving a speech", "Elon Musk"),
    ("a man - Musk - on Mars", "Elon Musk"), ("Portrait: Musk on stage", "Elon Musk"),
    ("Taylor Alison Swift singing", "Taylor Swift"),
    ("Pope Leo blessing a crowd", "Pope Leo XIV"),
    ("奥巴马在演讲", "Barack Obama"), ("ترامب يرقص", "Donald Trump"), ("特朗普跳舞", "Donald Trump"),
    ("Байден eating ice cream", "Joe Biden"), ("テイラー・スウィフト singing", "Taylor Swift"),
    ("テイラースウィフト singing", "Taylor Swift"), ("马斯克在火星", "Elon Musk"), ("बराक ओबामा भाषण देते हुए", "Barack Obama"),
])
def test_a_protected_persons_distinctive_name_or_translation_is_denied(person_gate: Gate, prompt: str,
                                                                        person: str) -> None:
    decision = person_gate.check(GateRequest("alice", prompt))
    assert [(r.code, r.subject) for r in decision.reasons] == [("protected_person", f"person:{person}")], prompt
    assert decision.reasons[0].evidence["kind"] == "exact" and decision.reasons[0].evidence["score"] == 1.0


@pytest.mark.parametrize("prompt", [
    "a swift river at dawn", "Swift river rapids", "a Taylor made suit", "a tailor making a suit", "a lion called Leo",
    "the pope's hat in a museum", "a bush in the garden", "trumpet player on stage", "a barrack room",
    "a musk ox in the tundra", "the scent of white musk",  # "Musk" counts only when written as a name
    "トランプで遊ぶ子供たち",  # playing cards, not the person
])
def test_everyday_words_inside_protected_names_pass(person_gate: Gate, prompt: str) -> None:
    assert person_gate.check(GateRequest("alice", prompt)).allowed, prompt


@pytest.mark.parametrize("prompt", [
    "A musk ox in the snow",  # fuzzy on "A musk", judged on the whole span: before, denied at 0.833
    "Musky scent candle",  # a near miss of a capitalised name is weak evidence only
    "Musk ox grazing in the tundra", "Musk melon on a plate", "Musk deer in the forest",  # a sentence's first word
    "Snow at dawn. Musk oxen graze", "MUSK OX HERD", "A Musk Ox In The Snow",  # capitals that say nothing
])
def test_a_capitalised_name_counts_only_where_its_capital_says_so(person_gate: Gate, prompt: str) -> None:
    decision = person_gate.check(GateRequest("alice", prompt))
    assert decision.allowed, (prompt, [(r.subject, r.evidence) for r in decision.reasons])


def test_a_distinctive_name_must_be_one_word(policy_copy: Path) -> None:
    persons = policy_copy / "protected_persons.toml"
    persons.write_text(persons.read_text().replace('distinctive_names = ["Biden"]',
                                                   'distinctive_names = ["Uncle Joe"]'))
    with pytest.raises(PolicyError, match="'Uncle Joe' is not one"):
        Policy.load(policy_copy)


def test_prompt_cases_run_the_gate_and_report_a_wrong_expectation(policy: Policy, tmp_path: Path) -> None:
    cases = tmp_path / "cases.toml"
    cases.write_text('[[case]]\nname = "names"\nexpect_allowed = true\nprompts = ["Obama at the beach", "a beach"]\n')
    first, second = run_cases(policy, cases)
    assert first.name == "names: 'Obama at the beach'" and not first.passed
    assert first.got == {"allowed": False, "reasons": ["protected_person"]}
    assert second.passed


# --- missing policy files and rules fail closed --------------------------------------------------------------------
@pytest.mark.parametrize("edit,expected", [
    (lambda d: (d / "persons.cedar").unlink(), "person.protected (shipped in persons.cedar)"),
    (lambda d: (d / "cameos.cedar").unlink(), "cameo.unknown, cameo.revoked"),
    (lambda d: (d / "works.cedar").write_text((d / "works.cedar").read_text().replace(
        '@reason("unlicensed_work")', '@reason("licence_missing")')), "work.unlicensed (found in works.cedar:"),
    (lambda d: (d / "protected_persons.toml").unlink(), "the protected persons list is missing"),
    (lambda d: (d / "content_categories.toml").unlink(), "the content categories list is missing"),
])
def test_a_missing_core_rule_or_list_is_refused(policy_copy: Path, edit,  # type: ignore[no-untyped-def]
                                                expected: str) -> None:
    edit(policy_copy)
    with pytest.raises(PolicyError) as error:
        Policy.load(policy_copy)
    assert expected in error.value.message


def _app_with_policies(initialized, policy_dir: Path):  # type: ignore[no-untyped-def]
    from api.app import create_app

    return create_app(initialized.settings.model_copy(update={"policy_dir": policy_dir}), workers=0)


def test_the_app_refuses_to_start_without_a_core_rule(sqlite_initialized,  # type: ignore[no-untyped-def]
                                                       policy_copy: Path) -> None:
    (policy_copy / "persons.cedar").unlink()
    with pytest.raises(PolicyError, match=r"core forbid rules are missing.*person\.protected"):
        _app_with_policies(sqlite_initialized, policy_copy)


def test_the_app_refuses_to_start_when_a_policy_case_fails(sqlite_initialized,  # type: ignore[no-untyped-def]
                                                            policy_copy: Path) -> None:
    persons = policy_copy / "persons.cedar"  # a weakened rule: exact name matches no longer deny
    persons.write_text(persons.read_text().replace("context.scores.exact >= resource.thresholds.exact ||\n", ""))
    with pytest.raises(PolicyError) as error:
        _app_with_policies(sqlite_initialized, policy_copy)
    assert "policy test cases fail, so Hallmark does not start" in error.value.message
    assert "'a protected person named in the prompt is denied': expected denied (protected_person), got allowed" \
        in error.value.message
    assert "hallmark policy check" in (error.value.hint or "")
    (policy_copy / "cases.toml").unlink()
    with pytest.raises(PolicyError, match="the policy test cases are missing"):
        _app_with_policies(sqlite_initialized, policy_copy)


def test_a_worker_refuses_to_start_when_a_policy_case_fails(sqlite_initialized,  # type: ignore[no-untyped-def]
                                                              policy_copy: Path) -> None:
    from tests.conftest import run_cli

    persons = policy_copy / "persons.cedar"
    persons.write_text(persons.read_text().replace("context.scores.exact >= resource.thresholds.exact ||\n", ""))
    result = run_cli(["worker"], {**sqlite_initialized.env, "HALLMARK_POLICY_DIR": str(policy_copy)}, timeout=120)
    assert result.returncode == 1, result.stderr  # a PolicyError: the configuration, not the command line
    assert "policy test cases fail, so Hallmark does not start" in result.stderr


def test_a_distinctive_name_is_denied_over_http(sqlite_initialized) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from api.app import create_app

    with TestClient(create_app(sqlite_initialized.settings, workers=0)) as client:
        headers = {"Authorization": f"Bearer {sqlite_initialized.admin_key}"}
        for prompt in ("Obama walking his dog", "Trump giving a speech at a rally"):
            response = client.post("/v1/gate/check", json={"prompt": prompt}, headers=headers)
            assert response.status_code == 200, response.text
            assert [r["code"] for r in response.json()["reasons"]] == ["protected_person"], prompt
        allowed = client.post("/v1/gate/check", json={"prompt": "a swift river at dawn"}, headers=headers)
        assert allowed.json()["allowed"] is True
