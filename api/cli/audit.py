"""`hallmark audit checkpoint|export|verify|report|erase`.

`verify DIR` reads only the export directory (and, if given, a key and earlier checkpoints): no database, no
settings, so an auditor runs it on their own machine. `verify --database` is the operator's check of the stored log.

Exit codes beyond the common ones: 4 when the stored log contradicts itself or what it signed (an integrity failure:
nothing is signed or exported), 5 when an export is consistent but was checked only with the key it carries."""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import typer

from api.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, err, fail, hallmark, out, print_json
from registry.audit.export import ExportReport
from registry.audit.tree import AuditIntegrityError

EXIT_INTEGRITY = 4  # the stored audit log was changed outside Hallmark: investigate, restore from a backup
EXIT_UNAUTHENTICATED = 5  # `verify` without --key: the export agrees with itself, but nothing says who signed it

app = typer.Typer(help="The audit log: signed checkpoints, export, offline verification, reports, erasure.",
                  no_args_is_help=True)


@contextmanager
def _integrity() -> Iterator[None]:
    """An integrity failure of the stored log gets its own exit code, apart from bad input and failed runs."""
    try:
        yield
    except AuditIntegrityError as exc:
        fail(f"audit log integrity failure: {exc.message}", hint=exc.hint, code=EXIT_INTEGRITY)


@app.command("checkpoint")
def checkpoint_command(
    key: bool = typer.Option(False, "--key", help="Print the log's verifier key (name+id+base64) instead."),
) -> None:
    """Sign (if the log grew) and print the current checkpoint, a C2SP signed note."""
    from api import audit

    hm = hallmark()
    try:
        if key:
            sys.stdout.write(audit.verifier_key_string(hm) + "\n")
            return
        with _integrity():
            signed = audit.checkpoint(hm)
    finally:
        hm.close()
    sys.stdout.write(signed.note)  # byte for byte: it is a signed document


@app.command("export")
def export_command(
    directory: Path = typer.Argument(..., help="A new or empty directory."),
    without_personal: bool = typer.Option(False, "--without-personal",
                                          help="Leave personal data out (it stays verifiable, like erased data)."),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Write entries.jsonl, the signed checkpoint, log.pub and leaf-hashes.bin for `hallmark audit verify`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from api import audit

    hm = hallmark()
    try:
        with Progress(TextColumn("exporting"), BarColumn(), MofNCompleteColumn(), console=err,
                      disable=json_output, transient=True) as progress:
            task = progress.add_task("export", total=None)

            def advance(index: int) -> None:
                if index % 1000 == 0:
                    progress.update(task, completed=index)

            with _integrity():
                result = audit.export(hm, directory, include_personal=not without_personal, on_entry=advance)
    finally:
        hm.close()
    summary = {"directory": str(result.directory), "entries": result.entries, "size": result.checkpoint.size,
               "root_hash_b64": base64.b64encode(result.checkpoint.root_hash).decode()}
    if json_output:
        print_json(summary)
    else:
        out.print(f"exported {result.entries} entries to {result.directory} "
                  f"(checkpoint size {summary['size']}, root {summary['root_hash_b64']})")


@app.command("verify")
def verify_command(
    directory: Path | None = typer.Argument(None, help="A directory written by `hallmark audit export`."),
    key: str | None = typer.Option(None, "--key", help="The log's public key as the operator published it: a file "
                                   "holding 32 raw bytes (log.pub) or the verifier key string (log.vkey, `hallmark "
                                   "audit checkpoint --key`), or that string itself. Without it the export is "
                                   f"checked against its own log.pub only, and the exit status is "
                                   f"{EXIT_UNAUTHENTICATED}."),
    origin: str | None = typer.Option(None, "--origin", help="The log's expected origin (key name)."),
    earlier: list[Path] = typer.Option([], "--checkpoint", help="A checkpoint you saved earlier: the export must "
                                       "extend it (repeatable)."),
    database: bool = typer.Option(False, "--database", help="Instead of an export, check this service's stored log "
                                  "in place: entries -> tree -> head, and every checkpoint it signed."),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Check an export offline: leaves -> RFC 6962 root -> signed checkpoint. Exits 1 naming the bad entry."""
    if database:
        if directory is not None:
            fail("Give an export directory or --database, not both.", hint="hallmark audit verify --database")
        _verify_database(json_output)
        return
    if directory is None:
        fail("Give the directory `hallmark audit export` wrote (or --database to check the stored log).",
             hint="hallmark audit verify ./audit-export --key log.vkey")
    report = _verify_export(directory, key, origin, earlier)
    if json_output:
        print_json(report.as_dict())
    else:
        _print_export_report(report)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)
    if not report.authenticated:
        raise typer.Exit(EXIT_UNAUTHENTICATED)


def _read_given_key(key: str) -> bytes:
    """--key: a file (log.pub or log.vkey), or the verifier key string itself."""
    path = Path(key)
    if path.is_file():
        return path.read_bytes()
    if key.count("+") >= 2 and not path.exists():  # name+keyid+base64: the base64 may hold "+" itself
        return key.encode()
    fail(f"--key {key}: no such file.", hint="Pass log.pub or log.vkey as the operator published it.")


def _read_earlier(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = "not a text file" if isinstance(exc, UnicodeDecodeError) else (exc.strerror or str(exc))
        fail(f"--checkpoint {path}: cannot be read as a saved checkpoint ({reason}).",
             hint="Pass a file saved from `hallmark audit checkpoint` or GET /v1/audit/checkpoint.")


def _verify_export(directory: Path, key: str | None, origin: str | None,
                   earlier: list[Path]) -> "ExportReport":
    from registry.audit.export import ExportError, verify_export

    public_key = _read_given_key(key) if key is not None else None
    earlier_notes = [_read_earlier(path) for path in earlier]
    try:
        return verify_export(directory, public_key=public_key, origin=origin, earlier=earlier_notes)
    except (ExportError, OSError, UnicodeDecodeError) as exc:
        fail(str(exc), hint="Give the directory `hallmark audit export` wrote, and the log's public key.",
             code=EXIT_BAD_INPUT)


def _print_export_report(report: "ExportReport") -> None:
    cp = report.checkpoint
    if cp is not None:
        out.print(f"checkpoint  {cp.origin}  size {cp.size}  root {base64.b64encode(cp.root_hash).decode()}"
                  f"  key {report.key_id}", markup=False)
    out.print(f"entries     {report.entries}  (personal fields present {report.personal_revealed}, erased "
              f"{report.personal_erased})")
    for size in report.earlier_checkpoints:
        out.print(f"earlier     checkpoint of size {size} is a prefix of this log")
    for problem in report.problems:
        err.print(f"[bold red]FAIL[/] {problem}", markup=True, highlight=False)
    if report.more_problems:
        err.print(f"... and {report.more_problems} more problem(s)")
    if not report.ok:
        out.print("[bold red]FAILED[/]: the export does not match the signed checkpoint")
    elif not report.authenticated:
        out.print("[bold yellow]NOT AUTHENTICATED[/]: the export is consistent with the key it carries, which "
                  "anyone can make; pass --key with the operator's published log.pub or log.vkey to check who "
                  "signed it")
    else:
        out.print("[bold green]OK[/]: every entry is in the signed log, unchanged and in order")


def _verify_database(json_output: bool) -> None:
    from api import audit

    hm = hallmark()
    try:
        with _integrity():
            report = audit.verify_database(hm)
    finally:
        hm.close()
    root = base64.b64encode(report.root_hash).decode()
    if json_output:
        print_json({"ok": report.ok, "size": report.size, "root_hash": root, "signed_sizes": report.signed_sizes,
                    "problems": report.problems, "more_problems": report.more_problems})
    else:
        out.print(f"database    size {report.size}  root {root}", markup=False)
        out.print(f"signed      {len(report.signed_sizes)} checkpoint(s) the entries hash to"
                  + (f" (sizes {report.signed_sizes[0]}..{report.signed_sizes[-1]})" if report.signed_sizes else ""))
        for problem in report.problems:
            err.print(f"[bold red]FAIL[/] {problem}", markup=True, highlight=False)
        if report.more_problems:
            err.print(f"... and {report.more_problems} more problem(s)")
        out.print("[bold green]OK[/]: the stored entries, tree and head agree with every checkpoint the log signed"
                  if report.ok else "[bold red]FAILED[/]: the stored log was changed outside Hallmark; restore it "
                  "from a backup and investigate")
    if not report.ok:
        raise typer.Exit(EXIT_INTEGRITY)


@app.command("report")
def report_command(
    start: str | None = typer.Option(None, "--from", help="Start of the period (date or date-time, UTC)."),
    end: str | None = typer.Option(None, "--to", help="End of the period (a bare date includes that day)."),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Counts for a reporting period: by event, decision, reason and policy version."""
    from api import audit

    begin = audit.period_bound(start, end=False) or datetime.fromtimestamp(0, timezone.utc)
    finish = audit.period_bound(end, end=True) or datetime.now(timezone.utc)
    hm = hallmark()
    try:
        with _integrity():
            result = audit.report(hm, begin, finish)
    finally:
        hm.close()
    if json_output:
        print_json(result)
        return
    span = ("no entries" if result["first_index"] is None
            else f"entries {result['first_index']}..{result['last_index']}")
    out.print(f"[bold]Audit report[/] {result['from']} .. {result['to']}: {result['entries']} events ({span})")
    cp = result["checkpoint"]
    out.print(f"  checkpoint {cp['origin']} size {cp['size']} root {cp['root_hash_b64']}", markup=False)
    for title, counts in (("events", result["by_event"]), ("decisions", result["decisions"]),
                          ("denial/withholding reasons", result["reasons"])):
        out.print(f"[bold]{title}[/]")
        for name, count in counts.items():
            out.print(f"  {count:>8}  {name}", markup=False)
        if not counts:
            out.print("  [dim]none[/]")
    out.print("[bold]decisions by policy version[/]")
    for version, counts in result["policy_versions"].items():
        out.print(f"  {version}  " + "  ".join(f"{k} {v}" for k, v in counts.items()), markup=False)
    if not result["policy_versions"]:
        out.print("  [dim]none[/]")


@app.command("erase")
def erase_command(
    events: list[int] = typer.Argument(None, help="Entry numbers (the `index` in the export)."),
    subject: str | None = typer.Option(None, "--subject", help="Also every entry about or by this id."),
    reason: str | None = typer.Option(None, "--reason", help="Why (logged with the erasure, e.g. a ticket)."),
    json_output: bool = typer.Option(False, "--json"),
) -> None:
    """Erase the personal data of audit entries. Leaves and proofs stay valid; the erasure is itself logged."""
    from api import audit

    hm = hallmark()
    try:
        with _integrity():
            erased = audit.erase(hm, list(events or []), subject=subject, reason=reason)
    finally:
        hm.close()
    if json_output:
        print_json({str(index): fields for index, fields in erased.items()})
        return
    if not erased:
        out.print("nothing to erase")
    for index, fields in erased.items():
        out.print(f"entry {index}: " + (f"erased {', '.join(fields)}" if fields
                                        else "no personal data (none was logged, or it is already erased)"))
