"""`hallmark accounts create|list|key|keys|revoke-key`."""

from __future__ import annotations

import typer

from api import accounts as service
from api.cli.common import hallmark, out, print_json
from registry import Accounts, Role

app = typer.Typer(help="Accounts and API keys.", no_args_is_help=True)


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Account name (letters, digits, . _ -)."),
    role: Role = typer.Option(Role.creator, help="creator, rights_holder, auditor or admin."),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Create an account and print its first API key (shown once)."""
    account, key = service.create_account(hallmark(), None, name, role)
    if json_output:
        print_json({"id": account.id, "name": account.name, "role": account.role, "api_key": key})
    else:
        out.print(f"created {account.role} account [bold]{account.name}[/] ({account.id})")
        out.print(f"API key (shown once): {key}")


@app.command("list")
def list_accounts(json_output: bool = typer.Option(False, "--json")) -> None:
    """List accounts."""
    hm = hallmark()
    with hm.db.session() as session:
        rows = [{"id": a.id, "name": a.name, "role": a.role, "created_at": a.created_at.isoformat()}
                for a in Accounts(session).list()]
    if json_output:
        print_json(rows)
        return
    for row in rows:
        out.print(f"{row['name']:<24} {row['role']:<14} {row['id']}")


@app.command("key")
def key(name: str = typer.Argument(...), json_output: bool = typer.Option(False, "--json")) -> None:
    """Issue a new API key for an account (shown once)."""
    account, api_key = service.issue_key(hallmark(), None, name)
    if json_output:
        print_json({"name": account.name, "api_key": api_key})
    else:
        out.print(f"API key for {account.name} (shown once): {api_key}")


@app.command("keys")
def keys(name: str = typer.Argument(...), json_output: bool = typer.Option(False, "--json")) -> None:
    """List an account's API keys by id (the <id> in hm_<id>_<secret>; secrets are never stored)."""
    views = service.list_keys(hallmark(), name)
    if json_output:
        print_json([view.__dict__ for view in views])
        return
    for view in views:
        state = f"revoked {view.revoked_at:%Y-%m-%d %H:%M}" if view.revoked_at else "active"
        out.print(f"{view.id}  created {view.created_at:%Y-%m-%d %H:%M}  {state}")


@app.command("revoke-key")
def revoke_key(name: str = typer.Argument(..., help="The account."),
               key_id: str = typer.Argument(..., help="The key's id (see `hallmark accounts keys NAME`)."),
               json_output: bool = typer.Option(False, "--json")) -> None:
    """Revoke an API key at once: the next request with it is refused."""
    view = service.revoke_key(hallmark(), None, name, key_id)
    if json_output:
        print_json(view.__dict__)
    else:
        out.print(f"revoked key {view.id} of {view.account}")
