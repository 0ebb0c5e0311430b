"""`hallmark keys`: the C2PA signing keys, the trust store and the watermark secret (list, init, rotate,
rotate-watermark, import, trust add/remove).

Every change is proven before it is installed (a test signature must read back as Trusted), retires what it
replaces instead of deleting it, and is recorded in the audit log. Private keys are never printed."""

from __future__ import annotations

from pathlib import Path

import typer

from api.cli.common import fail, hallmark, out, print_json
from api.context import Hallmark
from api.keystore import KeyChange, KeyStore, signing_warnings
from registry import AuditLog

app = typer.Typer(help="C2PA signing keys, the trust store and the watermark secret.", no_args_is_help=True)
trust_app = typer.Typer(help="Extra trust anchors (root CAs whose manifests verify as Trusted).",
                        no_args_is_help=True)
app.add_typer(trust_app, name="trust")


def _read(path: Path, what: str) -> bytes:
    if not path.is_file():
        fail(f"The {what} {path} does not exist.")
    return path.read_bytes()


def _record(hm: Hallmark, change: KeyChange, json_output: bool) -> None:
    with hm.db.session() as session:
        AuditLog(session).append(f"keys.{change.action}", signer_sha256=[c["sha256"] for c in change.signer],
                                 trusted_added=change.trusted_added, watermark_key_ids=change.watermark_key_ids)
    hm.close()
    if json_output:
        print_json(change.__dict__)
        return
    out.print(f"[green]{change.action}[/] done")
    for cert in change.signer[:1]:
        out.print(f"  signer   {cert['subject']}  (until {str(cert['not_after'])[:10]}, "
                  f"sha256 {str(cert['sha256'])[:16]}…)")
    for path in change.trusted_added:
        out.print(f"  trusted  {path}")
    if change.watermark_key_ids:
        out.print(f"  watermark key {change.watermark_key_ids[0]} marks new clips; {change.watermark_key_ids[1]} "
                  "is retired (read with, never marked with)")
    if change.retired_to:
        out.print(f"  retired  previous files kept in {change.retired_to}")
    for note in change.notes:
        out.print(f"  {note}")


@app.command("list")
def list_keys(json_output: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """The signing certificate chain, the local CA, every trust anchor and the timestamp authority."""
    hm = hallmark(require_schema=False)
    status = KeyStore(hm).status()
    status["warnings"] = signing_warnings(hm.settings)
    if json_output:
        print_json(status)
        return
    signer = status["signer"]
    out.print(f"[bold]Signer[/] ({signer['kind']}, {signer['alg']})"
              + (f"  callback {signer['callback']}" if signer["callback"] else f"  key {signer.get('key_path')} "
                 f"mode {signer.get('key_mode')}"))
    for cert in signer["chain"]:
        out.print(f"  {'CA  ' if cert['ca'] else 'leaf'} {cert['subject']}  until {str(cert['not_after'])[:10]} "
                  f"({cert['days_left']} days)  sha256 {str(cert['sha256'])[:16]}…")
    out.print(f"[bold]Local CA[/] {status['local_ca']['path']}  "
              f"{'can issue' if status['local_ca']['can_issue'] else 'no CA key (cannot issue)'}")
    out.print("[bold]Trust anchors[/]")
    for anchor in status["trust_anchors"]:
        if "error" in anchor:
            out.print(f"  [red]unreadable[/] {anchor['path']}: {anchor['error']}")
            continue
        out.print(f"  {anchor['subject']}  until {str(anchor['not_after'])[:10]}  "
                  f"sha256 {str(anchor['sha256'])[:16]}…  [dim]{anchor['source']}[/]")
    out.print(f"[bold]Timestamp authority[/] {status['tsa_url'] or 'none (off)'}")
    watermark = status["watermark"]
    if "error" in watermark:
        out.print(f"[bold]Watermark key[/] [red]unreadable[/]: {watermark['error']}")
    else:
        current = watermark["current"]
        out.print(f"[bold]Watermark key[/] id {current['key_id']}  [dim]{current['source']}[/]")
        for retired in watermark["retired"]:
            out.print(f"  retired {retired['label']}  id {retired['key_id']}  (read with, never marked with)")
    for warning in status["warnings"]:
        out.print(f"[yellow]note[/] {warning}")


@app.command("init")
def init_keys(json_output: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Make the local root CA and a signing certificate where missing (what `hallmark init` does)."""
    hm = hallmark()
    _record(hm, KeyStore(hm).init(), json_output)


@app.command()
def rotate(
    ca: bool = typer.Option(False, "--ca", help="Also make a new local root CA (the old root stays trusted)."),
    json_output: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """New signing key and certificate; clips signed before still verify as Trusted."""
    hm = hallmark()
    _record(hm, KeyStore(hm).rotate(new_ca=ca), json_output)


@app.command("rotate-watermark")
def rotate_watermark(json_output: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """New watermark secret for new clips; the old one is kept for reading, so clips released before still resolve."""
    hm = hallmark()
    _record(hm, KeyStore(hm).rotate_watermark(), json_output)


@app.command("import")
def import_keys(
    chain: Path = typer.Option(..., "--chain", help="PEM certificate chain, signing certificate first."),
    key: Path = typer.Option(None, "--key", help="PEM private key (omit when a KMS/HSM callback signs)."),
    trust_root: Path = typer.Option(None, "--trust-root", help="The chain's root CA, added to the trust store."),
    json_output: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Use an operator's certificate chain and key for signing (checked with a test signature first)."""
    hm = hallmark()
    change = KeyStore(hm).import_chain(
        _read(chain, "certificate chain"), _read(key, "private key") if key else None,
        trust_root=_read(trust_root, "trust root") if trust_root else None)
    _record(hm, change, json_output)


@trust_app.command("add")
def trust_add(
    pem: Path = typer.Argument(..., help="PEM root CA certificate to trust."),
    json_output: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Trust another root: manifests signed under it verify as Trusted instead of Valid."""
    hm = hallmark()
    _record(hm, KeyStore(hm).trust_add(_read(pem, "certificate")), json_output)


@trust_app.command("remove")
def trust_remove(
    sha256: str = typer.Argument(..., help="The anchor's SHA-256 fingerprint (at least 8 hex digits)."),
    json_output: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """Stop trusting an anchor from keys/trusted/ (the file is retired, not deleted)."""
    hm = hallmark()
    _record(hm, KeyStore(hm).trust_remove(sha256), json_output)
