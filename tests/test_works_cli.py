"""The CLI as an operator uses it: `works add|list|show|remove`, `gate check` (exit 3 when denied) and
`policy check` (exit 2 naming file and line on a broken policy)."""

from __future__ import annotations

import json
import shutil

from tests.conftest import run_cli
from policies import POLICY_DIR


def test_works_and_gate_check_from_the_console(sqlite_initialized) -> None:  # type: ignore[no-untyped-def]
    env = sqlite_initialized.env
    for name, role in (("studio", "rights_holder"), ("alice", "creator"), ("bob", "creator")):
        assert run_cli(["accounts", "create", name, "--role", role, "--json"], env).returncode == 0
    added = run_cli(["works", "add", "Spider-Man", "--holder", "studio", "--alias", "Hombre Araña",
                     "--description", "a superhero in a red and blue suit who swings between skyscrapers on webs",
                     "--json"], env)
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["aliases"] == ["Spider-Man", "Hombre Araña"]
    licensed = run_cli(["works", "add", "Bluey", "--holder", "studio", "--mode", "licensed", "--licensee", "alice"],
                       env)
    assert licensed.returncode == 0 and "licence       alice" in licensed.stdout

    denied = run_cli(["gate", "check", "5p1d3r-m4n on a rooftop", "--as", "bob", "--json"], env)
    assert denied.returncode == 3, denied.stderr
    decision = json.loads(denied.stdout)
    assert decision["allowed"] is False and decision["reasons"][0]["subject"] == "work:Spider-Man"
    assert decision["reasons"][0]["evidence"]["text"] == "5p1d3r-m4n"
    human = run_cli(["gate", "check", "el Hombre Araña saltando", "--as", "bob"], env)
    assert human.returncode == 3 and "opted_out_work" in human.stdout and "Hombre Araña" in human.stdout
    ok = run_cli(["gate", "check", "Bluey playing in the yard", "--as", "alice", "--json"], env)
    assert ok.returncode == 0 and json.loads(ok.stdout)["obligations"][0]["name"] == "visible_mark_strong"

    listed = json.loads(run_cli(["works", "list", "--json"], env).stdout)
    assert sorted(w["name"] for w in listed) == ["Bluey", "Spider-Man"]
    removed = run_cli(["works", "remove", "Spider-Man"], env)
    assert removed.returncode == 0 and "removed Spider-Man" in removed.stdout

    bad = run_cli(["works", "add", "X", "--holder", "studio"], env)
    assert bad.returncode == 2 and "too short" in bad.stderr and "Traceback" not in bad.stderr


def test_policy_check(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ok = run_cli(["policy", "check", "--json"], {**_env(), "HALLMARK_DATA_DIR": str(tmp_path)})
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["valid"] and report["cases"]["failed"] == 0 and report["cases"]["passed"] >= 25
    broken = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, broken, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    persons = broken / "persons.cedar"
    persons.write_text(persons.read_text().replace("resource.cameo.verified", "resource.cameo.verifeid"))
    failed = run_cli(["policy", "check", "--dir", str(broken)], _env())
    assert failed.returncode == 2
    assert "persons.cedar:4:" in failed.stderr and "verifeid" in failed.stderr and "Traceback" not in failed.stderr


def _env() -> dict[str, str]:
    import os

    from tests.conftest import ROOT

    return {**os.environ, "PYTHONPATH": str(ROOT)}
