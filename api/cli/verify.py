"""`hallmark verify FILE`: the same report as POST /v1/verify, with the full record (a local operator sees all)."""

from __future__ import annotations

from pathlib import Path

import typer

from api.cli.common import hallmark, out, print_json
from api.verification import report_body, verify_file
from registry import Accounts, Role


def register(app: typer.Typer) -> None:
    @app.command()
    def verify(
        file: Path = typer.Argument(..., help="The video to check."),
        json_output: bool = typer.Option(False, "--json", help="Print the whole report as JSON."),
    ) -> None:
        """Check a clip's origin: C2PA credentials, invisible watermark, and the generation it leads to."""
        hm = hallmark()
        with hm.db.session() as session:
            viewer = next((a for a in Accounts(session).list() if a.role == Role.admin), None)
        try:
            report = report_body(verify_file(hm, file, viewer))
        finally:
            hm.close()  # appends this process's verify count to the audit log
        if json_output:
            print_json(report)
            return
        out.print(f"[bold]{report['verdict']}[/]")
        c2pa, mark, record = report["c2pa"], report["watermark"], report["record"]
        out.print(f"  C2PA       {c2pa['state']}" + (f"  signer {c2pa['signer']}" if c2pa["signer"] else "")
                  + (f"  failures {', '.join(c2pa['failure_codes'])}" if c2pa["failure_codes"] else ""))
        p_value = f"  p={mark['p_value']:.1e}" if mark["p_value"] is not None else ""
        out.print(f"  watermark  {'detected' if mark['detected'] else 'not detected'}"
                  + (f"  payload {mark['payload']}" if mark["payload"] else "") + p_value + f"  ({mark['method']})")
        if record:
            out.print(f"  record     generation {record['generation_id']}  {record['status']}  {record['created_at']}")
        recovered = report["recovered_manifest"]
        if recovered:
            out.print(f"  recovered  manifest {recovered['manifest_label']}  {recovered['state']}  "
                      f"hard binding {recovered['hard_binding'].replace('_', ' ')}")
        if c2pa["note"]:
            out.print(f"  [dim]note: {c2pa['note']}[/]")
        for note in report["notes"]:
            out.print(f"  [yellow]note:[/] {note}")
