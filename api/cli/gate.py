"""`hallmark gate check`: evaluate the whole gate for a prompt without generating (exit 0 allowed, 3 denied)."""

from __future__ import annotations

from pathlib import Path

import typer

from api.cli.common import EXIT_DENIED, fail, hallmark, out, print_json
from api.cli.generate import acting_account
from api.gate import dry_run

app = typer.Typer(help="Dry-run the consent and policy gate.", no_args_is_help=True)


@app.command("check")
def check(
    prompt: str = typer.Argument(..., help="The prompt; mention cameos as @handle."),
    as_account: str = typer.Option(None, "--as", help="Check as this account (default: the admin)."),
    cameo: list[str] = typer.Option([], "--cameo", help="A cameo handle to use (repeatable)."),
    reference_image: Path = typer.Option(None, "--reference-image", help="A reference image to check."),
    commercial: bool = typer.Option(False, "--commercial", help="Check as commercial use."),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Would this request be allowed? Prints every reason with its evidence."""
    image = None
    if reference_image is not None:
        if not reference_image.is_file():
            fail(f"{reference_image} is not a file.")
        image = reference_image.read_bytes()
    hm = hallmark()
    admin = acting_account(hm, None)
    decision = dry_run(hm, admin, prompt, cameos=cameo, commercial=commercial, reference_image=image,
                       as_account=as_account)
    if json_output:
        print_json(decision.as_dict())
    else:
        out.print("[green]allowed[/]" if decision.allowed else "[red]denied[/]")
        for reason in decision.reasons:
            out.print(f"  - [bold]{reason.code}[/] {reason.message}")
            evidence = reason.evidence or {}
            if evidence.get("kind"):
                where = f" at {evidence['span'][0]}-{evidence['span'][1]}" if evidence.get("span") else ""
                out.print(f"      {evidence['kind']} match, score {evidence['score']}{where}: "
                          f"{evidence.get('text') or ''!r} ~ {evidence.get('matched')!r}")
        for obligation in decision.obligations:
            out.print(f"  obligation: {obligation}")
        out.print(f"  policy {decision.policy_version}")
    if not decision.allowed:
        raise SystemExit(EXIT_DENIED)
