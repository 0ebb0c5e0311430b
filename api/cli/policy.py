"""`hallmark policy check`: validate the Cedar policies, schema and lists, then run the policy test cases."""

from __future__ import annotations

from pathlib import Path

import typer

from api.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, fail, out, print_json
from api.settings import load_settings
from guard.gate.policy import PolicyError, check as check_policies
from policies import POLICY_DIR

app = typer.Typer(help="Policy-as-code (policies/).", no_args_is_help=True)


@app.command("check")
def check(
    directory: Path = typer.Option(None, "--dir", help="The policy directory (default: HALLMARK_POLICY_DIR or the "
                                                        "packaged policies/)."),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Exit 0 when the policies are valid and every case in cases.toml passes; 1 when a case fails; 2 when a file
    is invalid (the message names the file and line)."""
    directory = directory or load_settings().policy_dir or POLICY_DIR
    try:
        policy, results = check_policies(directory)
    except PolicyError as exc:
        fail(exc.message, hint=exc.hint, code=EXIT_BAD_INPUT)
    failed = [r for r in results if not r.passed]
    if json_output:
        print_json({"valid": True, "directory": str(directory), "policy_version": policy.version,
                    "rules": sorted(policy.rules), "protected_persons": len(policy.persons),
                    "cases": {"passed": len(results) - len(failed), "failed": len(failed)},
                    "failures": [{"name": r.name, "expected": r.expected, "got": r.got} for r in failed]})
    else:
        out.print(f"[green]valid[/] {directory}  policy {policy.version}")
        out.print(f"  {len(policy.rules)} rules, {len(policy.persons)} protected persons, "
                  f"{len(policy.background)} background prompts")
        out.print(f"  cases: {len(results) - len(failed)} passed, {len(failed)} failed")
        for result in failed:
            out.print(f"  [red]FAIL[/] {result.name}: expected {result.expected}, got {result.got}")
    if failed:
        raise SystemExit(EXIT_FAILED)
