"""`hallmark works add|list|show|remove|license|unlicense`: the copyright registry from the console (as the admin)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from api import works as service
from api.cli.common import fail, hallmark, out, print_json
from api.cli.generate import acting_account
from api.works import LicenceCreate, WorkCreate, WorkView
from registry import WorkKind, WorkMode

app = typer.Typer(help="Copyright works: opt-outs and licences.", no_args_is_help=True)


def _read_image(path: Path) -> tuple[str, bytes]:
    if not path.is_file():
        fail(f"{path} is not a file.", hint="Give the path of a PNG, JPEG, WebP or GIF image.")
    return path.name, path.read_bytes()


def _print_work(view: WorkView) -> None:
    out.print(f"[bold]{view.name}[/] ({view.kind}, {view.mode})  id {view.id}  holder {view.holder}")
    out.print(f"  aliases       {', '.join(view.aliases)}")
    for description in view.descriptions:
        out.print(f"  description   {description}")
    for image in view.images:
        out.print(f"  image         {image['label']}  sha256 {image['sha256'][:16]}")
    for licence in view.licences:
        limits = " non-commercial" if licence.non_commercial else ""
        if licence.starts_at or licence.ends_at:
            limits += f" {licence.starts_at or '…'} → {licence.ends_at or '…'}"
        out.print(f"  licence       {licence.licensee}{limits}  id {licence.id}")
    if view.valid_from or view.valid_until:
        out.print(f"  valid         {view.valid_from or '…'} → {view.valid_until or '…'}")


@app.command("add")
def add(
    name: str = typer.Argument(..., help="The work's name (also matched as an alias)."),
    holder: str = typer.Option(..., "--holder", help="The rights holder's account name."),
    alias: list[str] = typer.Option([], "--alias", help="Another name, any language (repeatable)."),
    description: list[str] = typer.Option([], "--description", help="A short description (repeatable)."),
    mode: WorkMode = typer.Option(WorkMode.opt_out, "--mode", help="opt_out (blocked for everyone) or licensed."),
    licensee: list[str] = typer.Option([], "--licensee", help="An account allowed to use it (repeatable)."),
    non_commercial: bool = typer.Option(False, "--non-commercial", help="Licences cover non-commercial use only."),
    licence_from: datetime = typer.Option(None, "--licence-from", help="Licences start (ISO date)."),
    licence_until: datetime = typer.Option(None, "--licence-until", help="Licences end (ISO date)."),
    kind: WorkKind = typer.Option(WorkKind.character, "--kind", help="character, franchise, brand, artwork, style."),
    image: list[Path] = typer.Option([], "--image", help="A reference image (repeatable)."),
    valid_from: datetime = typer.Option(None, "--valid-from", help="Enforced from (ISO date)."),
    valid_until: datetime = typer.Option(None, "--valid-until", help="Enforced until (ISO date)."),
    claim: str = typer.Option("", "--claim", help="The rights claim, as given."),
    semantic_threshold: float = typer.Option(None, "--semantic-threshold", help="Per-work paraphrase threshold."),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Register a work for a rights holder."""
    hm = hallmark()
    admin = acting_account(hm, None)
    images = [_read_image(path) for path in image]
    try:
        body = WorkCreate(name=name, holder=holder, kind=kind, aliases=alias, descriptions=description, mode=mode,
                          licensees=licensee, non_commercial=non_commercial, licence_starts_at=licence_from,
                          licence_ends_at=licence_until, valid_from=valid_from, valid_until=valid_until,
                          rights_claim=claim, semantic_threshold=semantic_threshold)
    except ValueError as exc:
        fail(str(exc).splitlines()[0] if str(exc) else "invalid input", hint=str(exc))
    view = service.register_work(hm, admin, body, images)
    if json_output:
        print_json(view.model_dump(mode="json"))
    else:
        out.print("[green]registered[/]")
        _print_work(view)


@app.command("list")
def list_works(
    holder: str = typer.Option(None, "--holder", help="Only this rights holder's works."),
    limit: int = typer.Option(100, "--limit"),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """List registered works."""
    hm = hallmark()
    views = service.list_works(hm, acting_account(hm, None), holder=holder, limit=limit)
    if json_output:
        print_json([view.model_dump(mode="json") for view in views])
        return
    for view in views:
        out.print(f"{view.id}  {view.mode:<9} {view.kind:<10} {view.name}  ({view.holder}; "
                  f"{len(view.aliases)} aliases, {len(view.descriptions)} descriptions, {len(view.licences)} licences)")


@app.command("show")
def show(work: str = typer.Argument(..., help="Work id or name."),
         json_output: bool = typer.Option(False, "--json")) -> None:
    """Show one work with its aliases, descriptions, images and licences."""
    hm = hallmark()
    with hm.db.session() as session:
        view = service.work_view(session, service.owned_work(session, acting_account(hm, None), work))
    if json_output:
        print_json(view.model_dump(mode="json"))
    else:
        _print_work(view)


@app.command("remove")
def remove(work: str = typer.Argument(..., help="Work id or name."),
           json_output: bool = typer.Option(False, "--json")) -> None:
    """Remove a work (no longer enforced; its licences are revoked)."""
    hm = hallmark()
    removed = service.remove_work(hm, acting_account(hm, None), work)
    if json_output:
        print_json({"id": removed.id, "name": removed.name, "removed": True})
    else:
        out.print(f"removed {removed.name} ({removed.id})")


@app.command("license")
def license_work(
    work: str = typer.Argument(..., help="Work id or name."),
    licensee: str = typer.Option(..., "--licensee", help="The account to license it to."),
    non_commercial: bool = typer.Option(False, "--non-commercial"),
    starts: datetime = typer.Option(None, "--from"),
    ends: datetime = typer.Option(None, "--until"),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """License a `licensed` work to an account."""
    hm = hallmark()
    view = service.grant_licence(hm, acting_account(hm, None), work, LicenceCreate(
        licensee=licensee, non_commercial=non_commercial, starts_at=starts, ends_at=ends))
    if json_output:
        print_json(view.model_dump(mode="json"))
    else:
        out.print(f"licensed to {view.licensee}  id {view.id}")


@app.command("unlicense")
def unlicense(work: str = typer.Argument(...), licence_id: str = typer.Argument(...)) -> None:
    """Revoke a licence."""
    hm = hallmark()
    service.revoke_licence(hm, acting_account(hm, None), work, licence_id)
    out.print(f"revoked licence {licence_id}")
