"""`hallmark cameo ...`: register and verify a cameo, operator enrollment, protected persons, permissions,
revocation, deletion, appearances and withdrawal. Commands act as `--as ACCOUNT` (default: the first admin, the
operator at the console)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from api import cameos as service
from api.cameos import CameoUpdate, CameoView, ContentRestrictions, RegistrationRejected
from api.cli.common import EXIT_BAD_INPUT, EXIT_DENIED, err, fail, hallmark, out, print_json
from api.cli.generate import acting_account
from api.context import Hallmark
from registry import Visibility

app = typer.Typer(help="Verified cameos: register, enroll, permissions, revoke, appearances, protected persons.",
                  no_args_is_help=True)

AS_OPTION = typer.Option(None, "--as", help="Account to act as (default: the admin).")
JSON_OPTION = typer.Option(False, "--json", help="Print the result as JSON.")


@contextmanager
def _progress(label: str, quiet: bool) -> Iterator:  # type: ignore[type-arg]
    with Progress(TextColumn(label), BarColumn(), TaskProgressColumn(), console=err, transient=True,
                  disable=quiet) as bar:
        task = bar.add_task(label, total=1.0)
        yield lambda fraction: bar.update(task, completed=fraction)


def _rejected(exc: RegistrationRejected, json_output: bool) -> None:
    if json_output:
        print_json({"verified": False, "failures": [failure.as_dict() for failure in exc.failures]})
    else:
        err.print(f"[bold red]rejected:[/] {exc.message.split(':')[0]}; nothing was stored.")
        for failure in exc.failures:
            err.print(f"  - [bold]{failure.code}[/] {failure.message}")
    raise SystemExit(EXIT_DENIED)


def _show(view: CameoView, json_output: bool) -> None:
    if json_output:
        print_json(view.model_dump(mode="json"))
        return
    state = "usable" if view.usable else "not usable"
    out.print(f"[bold]@{view.handle}[/] ({view.id})  {view.status}, {state}  owner {view.owner}")
    out.print(f"  visibility {view.visibility}" + (f"  approved: {', '.join(view.approved_accounts)}"
                                                   if view.approved_accounts else ""))
    restrictions = view.content_restrictions
    if restrictions.categories or restrictions.terms:
        out.print(f"  restricted: categories {restrictions.categories or '-'}  terms {restrictions.terms or '-'}")
    if view.expires_at:
        out.print(f"  expires {view.expires_at:%Y-%m-%d %H:%M} UTC")
    if view.revoked_at:
        out.print(f"  revoked {view.revoked_at:%Y-%m-%d %H:%M} UTC")
    out.print(f"  face templates stored (sealed): {view.templates}")


def _account(hm: Hallmark, name: str | None):  # type: ignore[no-untyped-def]
    return acting_account(hm, name)


@app.command("register")
def register(
    handle: str = typer.Argument(..., help="The @handle to register."),
    visibility: Visibility = typer.Option(Visibility.only_me, help="only_me, approved or everyone."),
    as_account: str = AS_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Start a self-service registration and print the challenge to answer on video."""
    hm = hallmark()
    cameo, challenge = service.start_registration(hm, _account(hm, as_account), handle, visibility)
    if json_output:
        print_json({"cameo": cameo.model_dump(mode="json"), "challenge": challenge.model_dump(mode="json")})
        return
    out.print(f"registered [bold]@{cameo.handle}[/] ({cameo.id}), pending verification")
    out.print(f"challenge {challenge.id}, answer before {challenge.expires_at:%H:%M:%S} UTC:")
    for step in challenge.instructions:
        out.print(f"  {step}")
    out.print(f"then: hallmark cameo verify {cameo.handle} VIDEO")


@app.command("challenge")
def challenge(handle: str = typer.Argument(...), as_account: str = AS_OPTION,
              json_output: bool = JSON_OPTION) -> None:
    """A fresh challenge for a pending cameo (one upload per challenge)."""
    hm = hallmark()
    actor = _account(hm, as_account)
    cameo = service.get_cameo(hm, actor, handle)
    view = service.reissue_challenge(hm, actor, cameo.id)
    if json_output:
        print_json(view.model_dump(mode="json"))
        return
    for step in view.instructions:
        out.print(f"  {step}")


@app.command("verify")
def verify(
    handle: str = typer.Argument(...),
    video: Path = typer.Argument(..., help="The video answering the challenge."),
    as_account: str = AS_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Verify a pending cameo with a video answering its latest challenge."""
    hm = hallmark()
    actor = _account(hm, as_account)
    cameo = service.get_cameo(hm, actor, handle)
    try:
        with _progress("analysing video", json_output) as on_progress:
            view = service.verify_registration(hm, actor, cameo.id, video, on_progress=on_progress)
    except RegistrationRejected as exc:
        _rejected(exc, json_output)
    _show(view, json_output)


@app.command("enroll")
def enroll(
    handle: str = typer.Option(..., "--handle", help="The @handle."),
    owner: str = typer.Option(..., "--owner", help="The account the cameo belongs to."),
    video: Path = typer.Option(None, "--video", help="A video of the person."),
    image: list[Path] = typer.Option([], "--image", help="A photo of the person (repeatable)."),
    evidence: str = typer.Option(..., "--evidence", help="How consent was collected (kept with the cameo)."),
    visibility: Visibility = typer.Option(Visibility.only_me, help="only_me, approved or everyone."),
    protected: str = typer.Option(None, "--protected", help="This is the cameo of the protected person NAME."),
    as_account: str = AS_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Operator enrollment with consent collected offline (admin only): status verified_by_operator."""
    hm = hallmark()
    operator = _account(hm, as_account)
    try:
        with _progress("analysing", json_output) as on_progress:
            view = service.enroll_by_operator(hm, operator, handle=handle, owner_name=owner, video=video,
                                              images=list(image), evidence=evidence, visibility=visibility,
                                              protected_name=protected, on_progress=on_progress)
    except RegistrationRejected as exc:
        _rejected(exc, json_output)
    _show(view, json_output)


@app.command("list")
def list_cameos(all_cameos: bool = typer.Option(False, "--all", help="Everyone's (admins)."),
                as_account: str = AS_OPTION, json_output: bool = JSON_OPTION) -> None:
    """List cameos."""
    hm = hallmark()
    views = service.list_cameos(hm, _account(hm, as_account), everyone=all_cameos)
    if json_output:
        print_json([view.model_dump(mode="json") for view in views])
        return
    if not views:
        out.print("no cameos" + ("" if all_cameos else " of yours (admins: --all for everyone's)"))
    for view in views:
        out.print(f"@{view.handle:<24} {view.status:<22} {view.visibility:<9} {view.owner:<16} {view.id}")


@app.command("show")
def show(handle: str = typer.Argument(...), as_account: str = AS_OPTION, json_output: bool = JSON_OPTION) -> None:
    """Show a cameo (never its face templates)."""
    hm = hallmark()
    _show(service.get_cameo(hm, _account(hm, as_account), handle), json_output)


@app.command("permissions")
def permissions(
    handle: str = typer.Argument(...),
    visibility: Visibility = typer.Option(None, help="only_me, approved or everyone."),
    approve: list[str] = typer.Option([], "--approve", help="Allow this account (repeatable)."),
    unapprove: list[str] = typer.Option([], "--unapprove", help="Stop allowing this account (repeatable)."),
    category: list[str] = typer.Option([], "--category", help="Restricted content category (repeatable; "
                                       "replaces the list)."),
    term: list[str] = typer.Option([], "--term", help="Restricted term (repeatable; replaces the list)."),
    clear_restrictions: bool = typer.Option(False, "--clear-restrictions"),
    expires: str = typer.Option(None, "--expires", help="ISO time with zone (2027-01-01T00:00:00Z) or 'never'."),
    as_account: str = AS_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Change who may use the cameo, content restrictions and expiry."""
    hm = hallmark()
    actor = _account(hm, as_account)
    current = service.get_cameo(hm, actor, handle)
    changes: dict[str, object] = {}
    if visibility is not None:
        changes["visibility"] = visibility
    if approve or unapprove:
        changes["approved_accounts"] = sorted((set(current.approved_accounts) | set(approve)) - set(unapprove))
    if clear_restrictions:
        changes["content_restrictions"] = ContentRestrictions()
    elif category or term:
        changes["content_restrictions"] = ContentRestrictions(
            categories=category or current.content_restrictions.categories,
            terms=term or current.content_restrictions.terms)
    if expires is not None:
        changes["expires_at"] = None if expires.lower() == "never" else _parse_time(expires)
    view = service.update_permissions(hm, actor, current.id, CameoUpdate(**changes))
    _show(view, json_output)


def _parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"--expires must be an ISO time like 2027-01-01T00:00:00Z or 'never'; got {value!r}.")
    if parsed.tzinfo is None:
        fail("--expires needs a time zone, e.g. 2027-01-01T00:00:00Z.")
    return parsed


@app.command("revoke")
def revoke(handle: str = typer.Argument(...), as_account: str = AS_OPTION, json_output: bool = JSON_OPTION) -> None:
    """Revoke at once (queued and running generations are withheld at release)."""
    hm = hallmark()
    actor = _account(hm, as_account)
    _show(service.revoke(hm, actor, service.get_cameo(hm, actor, handle).id), json_output)


@app.command("delete")
def delete(handle: str = typer.Argument(...), yes: bool = typer.Option(False, "--yes", help="Do not ask."),
           as_account: str = AS_OPTION) -> None:
    """Delete a cameo: its face templates are erased; the handle stays reserved."""
    hm = hallmark()
    actor = _account(hm, as_account)
    cameo = service.get_cameo(hm, actor, handle)
    if not yes and not typer.confirm(f"Erase the face templates of @{cameo.handle} and retire it?"):
        raise SystemExit(EXIT_BAD_INPUT)
    service.delete(hm, actor, cameo.id)
    out.print(f"deleted @{cameo.handle}: face templates erased")


@app.command("takedown")
def takedown(
    handle: str = typer.Argument(..., help="The disputed cameo's @handle or id."),
    reason: str = typer.Option(..., "--reason", help="Why (kept with the cameo and in the audit log)."),
    as_account: str = AS_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Resolve a dispute (admin only): erase a cameo's face templates and retire it with a reason, e.g. when
    someone registered another person's face; that person can then register their own."""
    hm = hallmark()
    view = service.take_down(hm, _account(hm, as_account), handle, reason)
    if json_output:
        print_json(view.model_dump(mode="json"))
        return
    out.print(f"took down @{view.handle}: face templates erased, the handle stays reserved")


@app.command("appearances")
def appearances(handle: str = typer.Argument(...), as_account: str = AS_OPTION,
                json_output: bool = JSON_OPTION) -> None:
    """Every generation that used or tried to use the cameo: allowed, denied, withheld."""
    hm = hallmark()
    actor = _account(hm, as_account)
    views = service.appearances(hm, actor, service.get_cameo(hm, actor, handle).id)
    if json_output:
        print_json([view.model_dump(mode="json") for view in views])
        return
    if not views:
        out.print("no appearances")
    for view in views:
        similarity = f"  face {view.similarity:.3f}" if view.similarity is not None else ""
        out.print(f"{view.requested_at:%Y-%m-%d %H:%M:%S}  {view.generation_id}  {view.requester:<16} "
                  f"{view.status:<10} via {'+'.join(view.how)}  {' > '.join(view.outcomes)}"
                  + (f"  ({', '.join(view.reasons)})" if view.reasons else "") + similarity)


@app.command("withdraw")
def withdraw(handle: str = typer.Argument(...), generation_id: str = typer.Argument(...),
             as_account: str = AS_OPTION) -> None:
    """Withdraw a released clip the cameo appears in (verify then reports it withdrawn)."""
    hm = hallmark()
    actor = _account(hm, as_account)
    generation = service.withdraw(hm, actor, service.get_cameo(hm, actor, handle).id, generation_id)
    out.print(f"generation {generation.id} is {generation.status}")


@app.command("protect")
def protect(
    name: str = typer.Option(..., "--name", help="The protected person's name."),
    image: list[Path] = typer.Option(..., "--image", help="A reference photo (repeatable)."),
    note: str = typer.Option("", "--note", help="Why they are protected, source of the images."),
    as_account: str = AS_OPTION,
    json_output: bool = JSON_OPTION,
) -> None:
    """Enroll a protected person's reference faces (admin only): their likeness is withheld on outputs."""
    hm = hallmark()
    try:
        view = service.protect(hm, _account(hm, as_account), name, list(image), note)
    except RegistrationRejected as exc:
        _rejected(exc, json_output)
    if json_output:
        print_json(view.as_dict())
    else:
        out.print(f"protected [bold]{view.name}[/] ({view.id}): {view.templates} face template(s), sealed")


@app.command("protected")
def protected(json_output: bool = JSON_OPTION) -> None:
    """List protected persons."""
    hm = hallmark()
    views = service.list_protected(hm)
    if json_output:
        print_json([view.as_dict() for view in views])
        return
    for view in views:
        out.print(f"{view.name:<32} {view.templates} template(s)  {view.id}")


@app.command("unprotect")
def unprotect(name: str = typer.Argument(...), as_account: str = AS_OPTION) -> None:
    """Remove a protected person and erase their face templates (admin only)."""
    hm = hallmark()
    service.unprotect(hm, _account(hm, as_account), name)
    out.print(f"removed {name}: face templates erased")
