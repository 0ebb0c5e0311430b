"""`hallmark accounts create|list|key`."""

from __future__ import annotations

import typer

from api.cli.common import hallmark, out, print_json
from registry import Accounts, AuditLog, Role

app = typer.Typer(help="Accounts and API keys.", no_args_is_help=True)


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Account name (letters, digits, . _ -)."),
    role: Role = typer.Option(Role.creator, help="creator, rights_holder, auditor or admin."),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Create an account and print its first API key (shown once)."""
    hm = hallmark()
    with hm.db.session() as session:
        accounts = Accounts(session)
        account = accounts.create(name, role)
        key = accounts.issue_key(account)
        AuditLog(session).append("account.created", subject=account.id, role=role, personal={"name": account.name})
        AuditLog(session).append("api_key.created", subject=account.id)
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
    hm = hallmark()
    with hm.db.session() as session:
        accounts = Accounts(session)
        account = accounts.require_by_name(name)
        api_key = accounts.issue_key(account)
        AuditLog(session).append("api_key.created", subject=account.id)
    if json_output:
        print_json({"name": account.name, "api_key": api_key})
    else:
        out.print(f"API key for {account.name} (shown once): {api_key}")
