"""`hallmark init` and `hallmark config`."""

from __future__ import annotations

import typer

from api.bootstrap import initialize
from api.cli.common import out, print_json
from api.settings import load_settings


def register(app: typer.Typer) -> None:
    @app.command()
    def init(
        force: bool = typer.Option(False, "--force", help="Make a new signing CA and C2PA certificate (the old "
                                   "ones are retired, not deleted; the watermark, face and log keys are kept)."),
        json_output: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Create the data dir, database schema, signing CA, log and watermark keys, and the first admin key."""
        result = initialize(load_settings(), force=force)
        if json_output:
            print_json(result.__dict__)
            return
        out.print(f"[bold]Hallmark data dir[/] {result.data_dir}  (database: {result.database})")
        for item in result.created:
            out.print(f"  [green]created[/] {item}")
        for item in result.kept:
            out.print(f"  [dim]kept[/]    {item}")
        for warning in result.warnings:
            out.print(f"  [yellow]warning[/] {warning}")
        if result.admin_key:
            out.print("\n[bold yellow]Admin API key (shown once, store it now):[/]")
            out.print(f"  {result.admin_key}")

    @app.command()
    def config() -> None:
        """Print the effective settings (secrets masked)."""
        print_json(load_settings().public_view())
