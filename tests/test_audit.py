"""The audit log on real SQLite and PostgreSQL, through the real HTTP app and the real CLI: exports that verify
with `hallmark audit verify` and with the independent RFC 6962 / RFC 9162 / signed-note code below, tampering
that is caught and located, erasure that keeps every proof, and parallel writers that make one sequence."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select

from registry import AuditLog, AuditTree, Database
from registry.audit import AuditCheckpoint, AuditPending, InvalidAuditEvent
from tests.conftest import ROOT, run_cli


# --- an independent RFC 6962 / RFC 9162 / C2SP signed-note implementation (shares no code with registry.audit) ---
def rfc_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def rfc_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def rfc_mth(hashes: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH over leaf hashes, by its recursive definition."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return rfc_node(rfc_mth(hashes[:k]), rfc_mth(hashes[k:]))


def rfc_check_inclusion(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2, step by step."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = rfc_node(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            r = rfc_node(r, p)
        fn //= 2
        sn //= 2
    return sn == 0 and r == root


def rfc_check_consistency(first: int, second: int, first_hash: bytes, second_hash: bytes,
                          path: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2, step by step."""
    if first == second:
        return path == [] and first_hash == second_hash
    if not path:
        return False
    if first & (first - 1) == 0:
        path = [first_hash] + path
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn //= 2
        sn //= 2
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr, sr = rfc_node(c, fr), rfc_node(c, sr)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            sr = rfc_node(sr, c)
        fn //= 2
        sn //= 2
    return sn == 0 and fr == first_hash and sr == second_hash


def open_signed_checkpoint(note: str, public_key: bytes) -> tuple[str, int, bytes]:
    """C2SP signed-note + tlog-checkpoint: (origin, size, root) if the Ed25519 signature verifies."""
    text, _, signatures = note.rpartition("\n\n")
    text += "\n"
    origin, size, root = text.splitlines()[:3]
    key_id = hashlib.sha256(origin.encode() + b"\n\x01" + public_key).digest()[:4]
    for line in signatures.splitlines():
        dash, name, signature = line.split(" ")
        blob = base64.b64decode(signature)
        if dash == "\u2014" and name == origin and blob[:4] == key_id:
            Ed25519PublicKey.from_public_bytes(public_key).verify(blob[4:], text.encode())  # raises if forged
            return origin, int(size), base64.b64decode(root)
    raise AssertionError("no signature by the log's key")


def independently_verify(export: Path) -> tuple[int, bytes]:
    public_key = (export / "log.pub").read_bytes()
    origin, size, root = open_signed_checkpoint((export / "checkpoint").read_text(), public_key)
    lines = (export / "entries.jsonl").read_text().splitlines()
    leaves = [rfc_leaf(base64.b64decode(json.loads(line)["leaf_b64"])) for line in lines]
    assert len(leaves) == size
    assert rfc_mth(leaves) == root
    return size, root


# --- helpers ------------------------------------------------------------------------------------------------------
def populate(initialized) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Accounts, an allowed and a denied generation through the real HTTP app. Returns API keys by role."""
    from api.app import create_app

    client = TestClient(create_app(initialized.settings, workers=0))
    admin = {"Authorization": f"Bearer {initialized.admin_key}"}
    keys = {"admin": initialized.admin_key}
    for name, role in (("carol", "creator"), ("audrey", "auditor")):
        response = client.post("/v1/accounts", json={"name": name, "role": role}, headers=admin)
        assert response.status_code == 201, response.text
        keys[role] = response.json()["api_key"]
    creator = {"Authorization": f"Bearer {keys['creator']}"}
    allowed = client.post("/v1/generations", json={"prompt": "a lighthouse at dusk, slow waves", "frames": 12,
                                                   "fps": 12}, headers=creator)
    assert allowed.status_code == 202, allowed.text
    denied = client.post("/v1/generations", json={"prompt": "@nobody dancing on the roof", "frames": 12,
                                                  "fps": 12}, headers=creator)
    assert denied.status_code == 403, denied.text
    keys["allowed_id"], keys["denied_id"] = allowed.json()["id"], denied.json()["generation_id"]
    return keys


def export_lines(export: Path) -> list[dict]:
    return [json.loads(line) for line in (export / "entries.jsonl").read_text().splitlines()]


def write_lines(export: Path, lines: list[str]) -> None:
    (export / "entries.jsonl").write_text("".join(line if line.endswith("\n") else line + "\n" for line in lines))


# --- the pure tree math against the independent implementation, on the database -------------------------------
def test_stored_tree_proofs_match_rfc_for_every_size(database_url: str) -> None:
    database = Database(database_url)
    database.migrate()
    with database.session() as session:
        for number in range(21):
            AuditLog(session).append("test.event", subject=f"s{number % 4}", number=number)
    tree = AuditTree(database.engine)
    tree.integrate()  # (the background integrator may have done it already)
    assert tree.size() == 21
    leaves = [rfc_leaf(entry.leaf) for entry in tree.entries(0, 21)]
    assert tree.root() == rfc_mth(leaves)
    for size in range(1, 22):
        root = rfc_mth(leaves[:size])
        assert tree.root(size) == root
        for index in range(size):
            assert rfc_check_inclusion(leaves[index], index, size, tree.inclusion_proof(index, size), root)
        for old in range(1, size + 1):
            assert rfc_check_consistency(old, size, rfc_mth(leaves[:old]), root, tree.consistency_proof(old, size))
    # a proof for another leaf, or against another root, does not check out
    assert not rfc_check_inclusion(leaves[3], 4, 21, tree.inclusion_proof(4, 21), tree.root(21))
    assert not rfc_check_consistency(5, 21, rfc_mth(leaves[:6]), tree.root(21), tree.consistency_proof(5, 21))
    database.dispose()


def test_append_is_part_of_the_callers_transaction(database_url: str) -> None:
    database = Database(database_url)
    database.migrate()
    with pytest.raises(RuntimeError), database.session() as session:
        AuditLog(session).append("test.rolled_back", note="never committed")
        raise RuntimeError("the change failed")
    with pytest.raises(InvalidAuditEvent), database.session() as session:
        AuditLog(session).append("test.bad", ratio=float("nan"))
    with pytest.raises(InvalidAuditEvent), database.session() as session:
        AuditLog(session).append("test.bad", huge=2**60)
    with database.session() as session:
        AuditLog(session).append("test.kept", actor_id="a1", subject="s1", personal={"email": "x@example.org"})
        assert [e.kind for e in AuditLog(session).for_subject("s1")] == ["test.kept"]  # seen before sequencing
    tree = AuditTree(database.engine)
    tree.integrate()
    with database.session() as session:
        events = AuditLog(session).for_subject("s1")
        assert [(e.index, e.kind, e.personal) for e in events] == [(0, "test.kept", {"email": "x@example.org"})]
    assert tree.size() == 1
    assert b"x@example.org" not in tree.entries(0, 1)[0].leaf  # only its salted commitment is in the leaf
    database.dispose()


def test_an_event_sequenced_while_a_subject_is_read_is_reported_once(database_url: str) -> None:
    """The integrator moves an event from audit_pending to audit_entries in its own transaction. It is run here right
    after the reader's first statement: a reader that looked at the two tables in two statements saw the event in
    neither (each statement saw its own snapshot)."""
    database = Database(database_url)
    database.migrate()
    with database.session() as session:
        AuditLog(session).append("test.raced", subject="s1")
    tree = AuditTree(database.engine)
    reads: list[str] = []

    def integrate_after_the_first_read(_conn, _cursor, statement: str, *_args) -> None:  # type: ignore[no-untyped-def]
        if "audit_" in statement and not reads:
            reads.append(statement)
            tree.integrate()

    with database.session() as session:
        connection = session.connection()
        event.listen(connection, "after_cursor_execute", integrate_after_the_first_read)
        events = AuditLog(session).for_subject("s1")
    assert reads and tree.size() == 1  # the event was sequenced during the read
    assert [e.kind for e in events] == ["test.raced"]
    with database.session() as session:
        assert [(e.index, e.kind) for e in AuditLog(session).for_subject("s1")] == [(0, "test.raced")]
    database.dispose()


# --- export, verify, tamper, erase ----------------------------------------------------------------------------
def test_export_verifies_with_the_cli_and_an_independent_rfc6962_check(initialized, tmp_path: Path) -> None:
    populate(initialized)
    export = tmp_path / "export"
    result = run_cli(["audit", "export", str(export), "--json"], initialized.env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["entries"] >= 8
    offline = {**initialized.env, "HALLMARK_DATABASE_URL": "nowhere://"}
    # without --key the export can only be checked against the key it carries: consistent, but not authenticated
    unauthenticated = run_cli(["audit", "verify", str(export)], offline)
    assert unauthenticated.returncode == 5, unauthenticated.stdout + unauthenticated.stderr
    assert "NOT AUTHENTICATED" in unauthenticated.stdout and "OK" not in unauthenticated.stdout
    as_json = json.loads(run_cli(["audit", "verify", str(export), "--json"], offline).stdout)
    assert (as_json["ok"], as_json["authenticated"], as_json["key_source"]) == (True, False, "export")
    # the operator's key as published: log.pub (32 raw bytes), log.vkey (the verifier key string), or the string
    vkey = run_cli(["audit", "checkpoint", "--key"], initialized.env).stdout.strip()
    assert (export / "log.vkey").read_text().strip() == vkey
    vkey_file = tmp_path / "published.vkey"
    vkey_file.write_text(vkey + "\n")
    for key in (str(initialized.settings.paths.log_pub), str(vkey_file), vkey):
        verified = run_cli(["audit", "verify", str(export), "--key", key, "--json"], offline)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert json.loads(verified.stdout)["key_source"] == "given"
    human = run_cli(["audit", "verify", str(export), "--key", vkey], offline)
    assert human.returncode == 0 and "OK" in human.stdout
    wrong_origin = run_cli(["audit", "verify", str(export), "--key", vkey, "--origin", "other.example/log"], offline)
    assert wrong_origin.returncode == 2 and "not 'other.example/log'" in wrong_origin.stderr
    size, _ = independently_verify(export)
    # the export holds prompts, names and consent evidence: only its owner may read it
    assert export.stat().st_mode & 0o777 == 0o700
    assert {path.name: path.stat().st_mode & 0o777 for path in export.iterdir()} == {
        name: 0o600 for name in ("entries.jsonl", "leaf-hashes.bin", "checkpoint", "log.pub", "log.vkey")}

    events = {line["event"]["kind"]: line for line in export_lines(export)}
    requests = [line for line in export_lines(export) if line["event"]["kind"] == "generation.requested"]
    assert [line["personal"]["prompt"]["value"] for line in requests] == ["a lighthouse at dusk, slow waves",
                                                                          "@nobody dancing on the roof"]
    for line in requests:  # the prompt is outside the leaf: only a salted commitment is in it
        leaf = base64.b64decode(line["leaf_b64"]).decode()
        assert "lighthouse" not in leaf and "nobody" not in leaf
        assert set(json.loads(leaf)["personal"]) == {"prompt"}
    assert requests[0]["event"]["data"]["params"]["frames"] == 12
    assert events["generation.denied"]["event"]["data"]["reasons"]  # the codes are public
    names = [line["personal"]["name"]["value"] for line in export_lines(export)
             if line["event"]["kind"] == "account.created"]
    assert names == ["admin", "carol", "audrey"]
    assert (export / "log.vkey").read_text().startswith(initialized.settings.audit_origin + "+")
    assert size == len(export_lines(export))


def test_tampering_is_caught_and_located(sqlite_initialized, tmp_path: Path) -> None:
    populate(sqlite_initialized)
    original = tmp_path / "original"
    assert run_cli(["audit", "export", str(original)], sqlite_initialized.env).returncode == 0
    lines = (original / "entries.jsonl").read_text().splitlines(keepends=True)
    assert len(lines) >= 8

    def tampered(name: str, new_lines: list[str]) -> subprocess.CompletedProcess[str]:
        copy = tmp_path / name
        shutil.copytree(original, copy)
        write_lines(copy, new_lines)
        return run_cli(["audit", "verify", str(copy)], sqlite_initialized.env)

    # one byte of one leaf, with the readable copy rewritten to match, as a careful forger would
    line = json.loads(lines[5])
    leaf = base64.b64decode(line["leaf_b64"]).replace(b'"kind":"', b'"kind":"X', 1)
    line["leaf_b64"], line["event"] = base64.b64encode(leaf).decode(), json.loads(leaf)
    changed = tampered("changed", lines[:5] + [json.dumps(line) + "\n"] + lines[6:])
    assert changed.returncode == 1
    assert "line 6 (entry 5): changed" in changed.stderr, changed.stderr
    assert "FAILED" in changed.stdout

    deleted = tampered("deleted", lines[:3] + lines[4:])
    assert deleted.returncode == 1
    assert "line 4 (entry 3): entry 3 is missing here" in deleted.stderr, deleted.stderr
    assert f"lines 5-{len(lines) - 1}: shifted the same way" in deleted.stderr, deleted.stderr
    assert "1 of the log's entries is not in the file (deleted or changed): 3" in deleted.stderr, deleted.stderr

    swapped = tampered("swapped", lines[:2] + [lines[6]] + lines[3:6] + [lines[2]] + lines[7:])
    assert swapped.returncode == 1
    assert "line 3 (entry 2): entry 2 is missing here; this line holds entry 6" in swapped.stderr, swapped.stderr
    assert "line 7 (entry 6): holds entry 2, expected entry 6" in swapped.stderr, swapped.stderr

    # the checkpoint itself: a different size is no longer what the key signed
    forged = tmp_path / "forged"
    shutil.copytree(original, forged)
    note = (forged / "checkpoint").read_text().split("\n")
    note[1] = str(int(note[1]) - 1)
    (forged / "checkpoint").write_text("\n".join(note))
    result = run_cli(["audit", "verify", str(forged)], sqlite_initialized.env)
    assert result.returncode == 1 and "checkpoint: the signature" in result.stderr, result.stderr

    # without the diagnostic hash list, a rewritten entry is still caught (by the root), just not located
    from registry.audit.export import verify_export

    blind = tmp_path / "blind"
    shutil.copytree(tmp_path / "changed", blind)
    (blind / "leaf-hashes.bin").unlink()
    report = verify_export(blind)
    assert not report.ok and any("do not hash to the checkpoint's root" in p.message for p in report.problems)
    # and a wrong public key is refused outright
    other = verify_export(original, public_key=bytes(32))
    assert not other.ok and other.problems[0].where == "checkpoint"
    # not an export at all: a clear error (the CLI exits 2 with it), not a verdict
    from registry.audit.export import ExportError

    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="is not an audit export"):
        verify_export(tmp_path / "empty", public_key=bytes(32))
    with pytest.raises(ExportError, match="log.pub is missing"):
        verify_export(tmp_path / "empty")


def test_erasing_a_prompt_keeps_the_log_verifiable(initialized, tmp_path: Path) -> None:
    populate(initialized)
    before = tmp_path / "before"
    assert run_cli(["audit", "export", str(before)], initialized.env).returncode == 0
    requested = next(line for line in export_lines(before) if line["event"]["kind"] == "generation.requested")
    index = requested["index"]

    erased = run_cli(["audit", "erase", str(index), "--reason", "request #42", "--json"], initialized.env)
    assert erased.returncode == 0, erased.stderr
    assert json.loads(erased.stdout) == {str(index): ["prompt"]}
    again = run_cli(["audit", "erase", str(index), "--json"], initialized.env)
    assert json.loads(again.stdout) == {str(index): []}  # idempotent
    missing = run_cli(["audit", "erase", "99999"], initialized.env)
    assert missing.returncode == 2 and "no entry 99999" in missing.stderr

    after = tmp_path / "after"
    assert run_cli(["audit", "export", str(after)], initialized.env).returncode == 0
    result = run_cli(["audit", "verify", str(after), "--checkpoint", str(before / "checkpoint"),
                      "--key", str(initialized.settings.paths.log_pub)], initialized.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a prefix of this log" in result.stdout
    independently_verify(after)
    lines = export_lines(after)
    assert "personal" not in lines[index] and lines[index]["leaf_b64"] == requested["leaf_b64"]
    erased_prompt = requested["personal"]["prompt"]["value"]
    assert erased_prompt not in (after / "entries.jsonl").read_text()
    assert erased_prompt in (before / "entries.jsonl").read_text()
    # on SQLite the erased bytes are gone from the files, not merely unlinked (secure_delete + WAL truncation)
    if initialized.settings.resolved_database_url.startswith("sqlite"):
        from api.audit import erase
        from api.context import Hallmark

        hm = Hallmark(initialized.settings)
        marker = "erase-me-7f3a9c@example.org"
        with hm.db.session() as session:
            AuditLog(session).append("test.contact", subject="c1", personal={"email": marker})
        AuditTree(hm.db.engine).integrate()
        contact_index = AuditTree(hm.db.engine).size() - 1
        database_file = Path(initialized.settings.resolved_database_url.removeprefix("sqlite:///"))

        def on_disk() -> bytes:
            wal = database_file.with_name(database_file.name + "-wal")
            return database_file.read_bytes() + (wal.read_bytes() if wal.exists() else b"")

        AuditTree(hm.db.engine).scrub()
        assert marker.encode() in on_disk()
        assert erase(hm, [], subject="c1") == {contact_index: ["email"]}
        assert marker.encode() not in on_disk()
        hm.close()
    log_of_erasure = lines[-1]["event"]
    assert log_of_erasure["kind"] == "audit.erased"
    assert log_of_erasure["data"] == {"index": index, "fields": sorted(requested["personal"]),
                                      "reason": "request #42"}


# --- the HTTP API -----------------------------------------------------------------------------------------------
def test_api_serves_checkpoints_entries_and_proofs_to_auditors(initialized) -> None:
    from api.app import create_app

    keys = populate(initialized)
    client = TestClient(create_app(initialized.settings, workers=0))
    auditor = {"Authorization": f"Bearer {keys['auditor']}"}
    public_key = initialized.settings.paths.log_pub.read_bytes()

    assert client.get("/v1/audit/checkpoint").status_code == 401
    forbidden = client.get("/v1/audit/checkpoint", headers={"Authorization": f"Bearer {keys['creator']}"})
    assert forbidden.status_code == 403 and forbidden.headers["content-type"] == "application/problem+json"

    first = client.get("/v1/audit/checkpoint", headers=auditor)
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/plain")
    origin, old_size, old_root = open_signed_checkpoint(first.text, public_key)
    assert origin == initialized.settings.audit_origin
    same = client.get("/v1/audit/checkpoint", headers={"Authorization": f"Bearer {keys['admin']}"})
    assert same.text == first.text  # the log did not grow: the same checkpoint

    page = client.get("/v1/audit/entries", params={"start": 0, "end": old_size}, headers=auditor).json()
    leaves = [rfc_leaf(base64.b64decode(entry["leaf_b64"])) for entry in page["entries"]]
    assert rfc_mth(leaves) == old_root and [e["index"] for e in page["entries"]] == list(range(old_size))

    # the log grows (a new account: two more events), then every entry is provably in the new checkpoint
    client.post("/v1/accounts", json={"name": "dave"}, headers={"Authorization": f"Bearer {keys['admin']}"})
    proof = client.get("/v1/audit/proof/inclusion", params={"index": 1}, headers=auditor).json()
    _, size, root = open_signed_checkpoint(proof["checkpoint"], public_key)
    assert size > old_size
    for index in range(size):
        body = client.get("/v1/audit/proof/inclusion", params={"index": index, "size": size},
                          headers=auditor).json()
        path = [base64.b64decode(h) for h in body["hashes_b64"]]
        leaf = rfc_leaf(base64.b64decode(body["leaf_b64"]))
        assert rfc_check_inclusion(leaf, index, size, path, root), index
    consistency = client.get("/v1/audit/proof/consistency", params={"old": old_size, "new": size},
                             headers=auditor).json()
    assert rfc_check_consistency(old_size, size, old_root, root,
                                 [base64.b64decode(h) for h in consistency["hashes_b64"]])
    fresh = client.get("/v1/audit/proof/consistency", params={"old": old_size}, headers=auditor).json()
    assert open_signed_checkpoint(fresh["checkpoint"], public_key)[1] == fresh["new"] >= size

    for params, endpoint in (({"index": size, "size": size}, "inclusion"), ({"index": 0, "size": 10**6},
                                                                             "inclusion"),
                             ({"old": size, "new": size - 1}, "consistency"), ({"old": 0}, "consistency")):
        bad = client.get(f"/v1/audit/proof/{endpoint}", params=params, headers=auditor)
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json", bad.text
    too_many = client.get("/v1/audit/entries", params={"start": 0, "end": 5000}, headers=auditor)
    assert too_many.status_code == 422

    report = client.get("/v1/audit/report", params={"from": "2000-01-01T00:00:00Z"}, headers=auditor).json()
    assert report["decisions"] == {"allowed": 1, "denied": 1}
    assert report["by_event"]["generation.requested"] == 2
    # A bare date as `to` includes that whole day, as the CLI's --to does: today's entries are in "up to today".
    today = datetime.now(timezone.utc).date().isoformat()
    until_today = client.get("/v1/audit/report", params={"from": "2000-01-01", "to": today}, headers=auditor).json()
    assert until_today["to"].startswith((datetime.now(timezone.utc).date() + timedelta(days=1)).isoformat())
    assert until_today["decisions"] == {"allowed": 1, "denied": 1}
    unreadable = client.get("/v1/audit/report", params={"from": "last tuesday"}, headers=auditor)
    assert unreadable.status_code == 422 and "not an ISO 8601 date" in unreadable.json()["detail"]
    assert unreadable.json()["hint"].startswith("e.g. 2026-01-31")


def test_report_counts_a_period(sqlite_initialized) -> None:
    # the CLI on SQLite; the same report over HTTP runs on both databases in the API test above
    initialized = sqlite_initialized
    populate(initialized)
    result = run_cli(["audit", "report", "--from", "2000-01-01", "--json"], initialized.env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["by_event"]["generation.requested"] == 2
    assert report["by_event"]["account.created"] == 3
    assert report["decisions"] == {"allowed": 1, "denied": 1}
    assert sum(report["reasons"].values()) >= 1
    [(version, counts)] = report["policy_versions"].items()
    assert counts == {"allowed": 1, "denied": 1} and version
    assert report["first_index"] == 0 and report["last_index"] == report["entries"] - 1
    empty = run_cli(["audit", "report", "--from", "2001-01-01", "--to", "2001-12-31", "--json"], initialized.env)
    assert json.loads(empty.stdout)["entries"] == 0
    human = run_cli(["audit", "report", "--from", "2000-01-01"], initialized.env)
    assert "generation.denied" in human.stdout and "decisions by policy version" in human.stdout
    bad = run_cli(["audit", "report", "--from", "last tuesday"], initialized.env)
    assert bad.returncode == 2 and "ISO 8601" in bad.stderr


def test_a_cli_command_leaves_its_events_sequenced(sqlite_initialized) -> None:
    database = Database(sqlite_initialized.settings.resolved_database_url)
    tree = AuditTree(database.engine)
    tree.integrate()
    before = tree.size()
    assert run_cli(["accounts", "create", "zed"], sqlite_initialized.env).returncode == 0
    assert tree.size() == before + 2  # account.created, api_key.created: in the tree, not left queued
    assert tree.integrate() == 0
    database.dispose()


def test_the_server_signs_checkpoints_periodically(initialized) -> None:
    from api.app import create_app

    populate(initialized)
    settings = initialized.settings.model_copy(update={"audit_checkpoint_seconds": 0.2})
    with TestClient(create_app(settings, workers=0)):
        database = Database(settings.resolved_database_url)
        deadline = time.monotonic() + 20
        count = 0
        while time.monotonic() < deadline and not count:
            with database.session() as session:
                count = session.scalar(select(func.count()).select_from(AuditCheckpoint))
            time.sleep(0.1)
        database.dispose()
    assert count >= 1


# --- parallel writers -------------------------------------------------------------------------------------------
WRITER = """
import sys
from registry import AuditLog, AuditTree, Database
url, writer, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
database = Database(url)
for number in range(count):
    with database.session() as session:
        AuditLog(session).append("test.parallel", subject=writer, writer=writer, number=number,
                                 personal={"note": f"{writer}-{number}"})
    if number % 10 == 0:
        AuditTree(database.engine).integrate(wait=False)
"""


def test_parallel_writers_make_one_consistent_sequence(database_url: str) -> None:
    database = Database(database_url)
    database.migrate()
    processes = [subprocess.Popen([sys.executable, "-c", WRITER, database_url, f"p{n}", "60"], cwd=ROOT,
                                  stderr=subprocess.PIPE, text=True) for n in range(3)]
    errors: list[BaseException] = []

    def thread_writer(name: str) -> None:
        try:
            for number in range(60):
                with database.session() as session:
                    AuditLog(session).append("test.parallel", subject=name, writer=name, number=number)
                if number % 7 == 0:
                    AuditTree(database.engine).integrate(wait=number % 2 == 0)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=thread_writer, args=(f"t{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in processes:
        assert process.wait(timeout=240) == 0, process.stderr.read()
    assert not errors, errors

    tree = AuditTree(database.engine)
    tree.integrate()
    total = 7 * 60
    assert tree.size() == total
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditPending)) == 0
    entries = tree.entries(0, total)
    assert [entry.index for entry in entries] == list(range(total))
    events = [json.loads(entry.leaf) for entry in entries]
    assert [event["index"] for event in events] == list(range(total))
    seen: dict[str, list[int]] = {}
    for event in events:
        seen.setdefault(event["data"]["writer"], []).append(event["data"]["number"])
    assert seen == {writer: list(range(60)) for writer in [f"p{n}" for n in range(3)] + [f"t{n}" for n in range(4)]}
    leaves = [rfc_leaf(entry.leaf) for entry in entries]
    assert tree.root() == rfc_mth(leaves)
    for index in (0, 1, 200, total - 1):
        assert rfc_check_inclusion(leaves[index], index, total, tree.inclusion_proof(index, total), tree.root())
    assert rfc_check_consistency(97, total, rfc_mth(leaves[:97]), tree.root(), tree.consistency_proof(97, total))
    database.dispose()


def test_v0_events_are_carried_into_the_new_log(database_url: str) -> None:
    from alembic import command
    from sqlalchemy import text

    database = Database(database_url)
    config = database._alembic_config()
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    with database.engine.begin() as connection:
        for seq, kind in ((1, "system.initialized"), (2, "account.created"), (3, "verify.requested")):
            connection.execute(text("INSERT INTO audit_events (seq, at, kind, actor_id, subject, data) "
                                    "VALUES (:seq, :at, :kind, NULL, 's', :data)"),
                               {"seq": seq, "at": f"2026-01-0{seq} 00:00:00", "kind": kind,
                                "data": json.dumps({"v0": seq})})
    database.migrate()
    tree = AuditTree(database.engine)
    tree.integrate()
    assert tree.size() == 3
    kinds = [json.loads(entry.leaf)["kind"] for entry in tree.entries(0, 3)]
    assert kinds == ["system.initialized", "account.created", "verify.requested"]
    assert json.loads(tree.entries(2, 3)[0].leaf)["data"] == {"v0": 3}
    database.dispose()


# --- a database writer rewriting history, and other integrity failures of the stored log -------------------------
def _rewrite(url: str, index: int, *, drop_checkpoints: bool) -> None:
    """What someone with write access to the database can do: rewrite an entry (a denial becomes an allowance),
    rebuild audit_nodes and audit_tree_head over the forged entries, and optionally forget the stored checkpoints."""
    from sqlalchemy import create_engine, text

    from registry.audit.leaf import canonical, decode_leaf
    from registry.audit.merkle import Frontier, flat_index, leaf_hash

    _sequenced(url)
    engine = create_engine(url)
    with engine.begin() as connection:
        rows = connection.execute(text("SELECT leaf_index, leaf FROM audit_entries ORDER BY leaf_index")).all()
        leaves = {int(row[0]): bytes(row[1]) for row in rows}
        event = decode_leaf(leaves[index])
        event["kind"], event["data"] = "generation.allowed", {**event["data"], "reasons": []}
        leaves[index] = canonical(event)
        connection.execute(text("UPDATE audit_entries SET leaf = :leaf, kind = 'generation.allowed' "
                                "WHERE leaf_index = :index"), {"leaf": leaves[index], "index": index})
        connection.execute(text("DELETE FROM audit_nodes"))
        frontier = Frontier()
        for position in sorted(leaves):
            for level, at, value in frontier.append(leaf_hash(leaves[position])):
                connection.execute(text("INSERT INTO audit_nodes (id, hash) VALUES (:id, :hash)"),
                                   {"id": flat_index(level, at), "hash": value})
        connection.execute(text("UPDATE audit_tree_head SET size = :size, frontier = :frontier WHERE id = 1"),
                           {"size": frontier.size, "frontier": frontier.to_bytes()})
        if drop_checkpoints:
            connection.execute(text("DELETE FROM audit_checkpoints"))
    engine.dispose()


def _sequenced(url: str) -> None:
    """Sequence what the test's own requests queued (the background integrator may not have yet), so the edits
    below hit the entries they name."""
    database = Database(url)
    AuditTree(database.engine).integrate()
    database.dispose()


def _execute(url: str, statement: str, **params: object) -> None:
    from sqlalchemy import create_engine, text

    _sequenced(url)
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(statement), params)
    engine.dispose()


def _denied_index(initialized) -> int:  # type: ignore[no-untyped-def]
    database = Database(initialized.settings.resolved_database_url)
    AuditTree(database.engine).integrate()
    [index] = [entry.index for entry in AuditTree(database.engine).entries(0, 10**6)
               if json.loads(entry.leaf)["kind"] == "generation.denied"]
    database.dispose()
    return index


def test_init_signs_a_checkpoint_and_keeps_it_outside_the_database(sqlite_initialized) -> None:
    """So an install is guarded from its first `init` (an upgrade runs `init`), not only from its first
    `audit checkpoint`: before that, emptying the checkpoints table would still let a forged root be signed."""
    from api.audit import public_key, state_file
    from api.context import Hallmark
    from registry.audit.state import read_signed_state

    hm = Hallmark(sqlite_initialized.settings)
    try:
        signed = read_signed_state(state_file(hm), public_key(hm), hm.settings.audit_origin)
        with hm.db.session() as session:
            stored = session.scalar(select(func.max(AuditCheckpoint.size)))
    finally:
        hm.close()
    assert signed is not None and stored is not None and signed.size <= stored


def test_the_log_key_never_signs_a_rewritten_history(initialized, tmp_path: Path) -> None:
    populate(initialized)
    env, url = initialized.env, initialized.settings.resolved_database_url
    saved = run_cli(["audit", "checkpoint"], env)
    assert saved.returncode == 0, saved.stderr
    state = initialized.settings.paths.log_key.with_name("log.state")
    assert state.read_text() == saved.stdout  # the last signed checkpoint, kept outside the database
    healthy = run_cli(["audit", "verify", "--database", "--json"], env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert json.loads(healthy.stdout)["ok"] and json.loads(healthy.stdout)["signed_sizes"]

    # rewrite a decision and rebuild the tree, then let the log grow: the stored checkpoints refuse it (here without
    # the state file, to show each guard on its own)
    from api.app import create_app

    remembered = state.read_text()
    state.unlink()
    _rewrite(url, _denied_index(initialized), drop_checkpoints=False)
    TestClient(create_app(initialized.settings, workers=0)).post(
        "/v1/accounts", json={"name": "erin"}, headers={"Authorization": f"Bearer {initialized.admin_key}"})
    refused = run_cli(["audit", "checkpoint"], env)
    assert refused.returncode == 4, refused.stdout + refused.stderr
    assert "integrity failure" in refused.stderr and "does not extend" in refused.stderr
    assert "the stored checkpoints" in refused.stderr and refused.stdout == ""
    assert "restore the database from a backup" in refused.stderr

    # delete the stored checkpoints too: the state file (outside the database) still refuses it
    state.write_text(remembered)
    _execute(url, "DELETE FROM audit_checkpoints")
    refused = run_cli(["audit", "checkpoint"], env)
    assert refused.returncode == 4 and "log.state" in refused.stderr, refused.stdout + refused.stderr
    assert run_cli(["audit", "export", str(tmp_path / "forged")], env).returncode == 4
    assert not (tmp_path / "forged").exists()
    checked = run_cli(["audit", "verify", "--database"], env)
    assert checked.returncode == 4 and "FAILED" in checked.stdout
    assert "do not hash to the signed checkpoint" in checked.stderr, checked.stderr
    database = Database(url)
    with database.session() as session:  # nothing was signed or stored for the forged tree
        assert session.exec(select(AuditCheckpoint.size)).all() == []
    database.dispose()
    # over HTTP: a problem body saying what happened, not a signed forgery
    auditor = TestClient(create_app(initialized.settings, workers=0)).get(
        "/v1/audit/checkpoint", headers={"Authorization": f"Bearer {initialized.admin_key}"})
    assert auditor.status_code == 500 and auditor.json()["type"] == "urn:hallmark:problem:audit_integrity"


def test_entries_cannot_be_hidden_by_editing_their_columns(initialized) -> None:
    populate(initialized)
    env, url = initialized.env, initialized.settings.resolved_database_url
    denied = _denied_index(initialized)
    today = datetime.now(timezone.utc).date().isoformat()
    before = run_cli(["audit", "report", "--from", today, "--json"], env)
    assert json.loads(before.stdout)["decisions"] == {"allowed": 1, "denied": 1}

    _execute(url, f"UPDATE audit_entries SET at = '2001-01-01 00:00:00' WHERE leaf_index = {denied}")
    moved = run_cli(["audit", "report", "--from", today, "--json"], env)
    assert moved.returncode == 4, moved.stdout + moved.stderr
    assert f"entry {denied}: the at column says '2001-01-01T00:00:00.000000Z'" in moved.stderr, moved.stderr
    database = Database(url)
    entry = AuditTree(database.engine).entries(denied, denied + 1)[0]
    event = json.loads(entry.leaf)
    original = datetime.fromisoformat(event["at"].replace("Z", "+00:00"))
    if url.startswith("sqlite"):  # as SQLAlchemy stores it there: naive UTC
        original = original.replace(tzinfo=None)  # type: ignore[assignment]
    _execute(url, "UPDATE audit_entries SET at = :at WHERE leaf_index = :index", at=original, index=denied)
    assert run_cli(["audit", "report", "--from", today], env).returncode == 0  # the column put back: no finding
    # a changed subject would hide the entry from its subject's history and from erasure
    _execute(url, "UPDATE audit_entries SET subject = 'someone-else' WHERE leaf_index = :index", index=denied)
    denied_generation = event["subject"]
    with database.session() as session, pytest.raises(Exception, match="subject column says 'someone-else'"):
        AuditLog(session).for_subject(denied_generation)
    database.dispose()
    erased = run_cli(["audit", "erase", "--subject", denied_generation], env)
    assert erased.returncode == 4 and "subject column" in erased.stderr, erased.stderr


def test_erasing_an_account_reaches_its_cameos_and_failures_keep_no_error_text(initialized) -> None:
    from api.context import Hallmark
    from api.generation import _fail
    from registry import Accounts, Cameo

    keys = populate(initialized)
    hm = Hallmark(initialized.settings)
    with hm.db.session() as session:
        owner = Accounts(session).by_name("carol")
        cameo = Cameo(handle="carol-cameo", owner_id=owner.id)
        session.add(cameo)
        session.flush()
        AuditLog(session).append("cameo.verified", actor_id="operator-1", subject=cameo.id, method="operator",
                                 personal={"handle": cameo.handle, "evidence": "passport seen, carol@example.org"})
        owner_id, cameo_id = owner.id, cameo.id
    # a third party's exception text (it may quote the prompt or a person) stays out of the permanent leaf
    failed = _fail(hm, keys["allowed_id"], RuntimeError("backend said: no such file /home/carol/private.png"))
    assert failed.status == "failed"
    tree = AuditTree(hm.db.engine)
    tree.integrate()
    last = tree.entries(tree.size() - 1, tree.size())[0]
    event = json.loads(last.leaf)
    assert event["kind"] == "generation.failed" and event["data"] == {"error_code": "RuntimeError"}
    assert b"carol" not in last.leaf and last.personal["error"]["value"].startswith("backend said")

    from api.audit import erase

    erased = erase(hm, [], subject=owner_id, reason="erasure request")
    with hm.db.session() as session:
        left = [event for event in AuditLog(session).for_subject(cameo_id) if event.kind == "cameo.verified"]
    assert [event.personal for event in left] == [None]  # the evidence naming the owner is gone
    assert any(fields == ["evidence", "handle"] for fields in erased.values())
    hm.close()


def test_rate_limited_and_requeued_generations_are_logged(sqlite_initialized) -> None:
    from api.app import create_app
    from api.context import Hallmark
    from api.jobs import STALE_AFTER, WorkerPool
    from registry import Generations
    from registry.clock import utcnow

    settings = sqlite_initialized.settings.model_copy(update={"rate_limit_generations_per_minute": 2})
    admin = {"Authorization": f"Bearer {sqlite_initialized.admin_key}"}
    with TestClient(create_app(settings, workers=0)) as client:
        answers = [client.post("/v1/generations", json={"prompt": f"a quiet harbour {n}", "frames": 12, "fps": 12},
                               headers=admin).status_code for n in range(4)]
        assert answers == [202, 202, 429, 429]
    hm = Hallmark(settings)  # the server stopped: its counts were logged
    tree = AuditTree(hm.db.engine)
    tree.integrate()
    events = [json.loads(entry.leaf) for entry in tree.entries(0, tree.size())]
    [limited] = [event for event in events if event["kind"] == "generation.rate_limited"]
    assert limited["data"]["count"] == 2 and limited["data"]["limit_per_minute"] == 2 and limited["actor"]

    # a job whose worker died goes back to the queue, and the log says which job and whose attempt died
    with hm.db.session() as session:
        generations = Generations(session)
        job = generations.queued_ids(limit=1)[0]
        assert generations.claim(job, "lost-host:4242:0")
        record = generations.get(job)
        record.updated_at = utcnow() - 2 * STALE_AFTER
        session.add(record)
    assert WorkerPool(hm, 0).requeue_stale([]) == 1
    tree.integrate()
    requeued = json.loads(tree.entries(tree.size() - 1, tree.size())[0].leaf)
    assert requeued["kind"] == "generation.requeued" and requeued["subject"] == job
    assert requeued["data"]["worker"] == "lost-host:4242:0" and requeued["data"]["requeued_by"]
    with hm.db.session() as session:
        assert Generations(session).get(job).status == "queued"
    hm.close()


def test_bad_proof_sizes_and_a_lost_entry_are_problems_not_crashes(initialized, tmp_path: Path) -> None:
    from api.app import create_app

    keys = populate(initialized)
    client = TestClient(create_app(initialized.settings, workers=0))
    auditor = {"Authorization": f"Bearer {keys['auditor']}"}
    for endpoint, params in (("inclusion", {"index": 0, "size": 2**63 - 1}),
                             ("inclusion", {"index": 0, "size": "99999999999999999999"}),
                             ("inclusion", {"index": 2**62, "size": 2**62 + 1}),
                             ("consistency", {"old": 1, "new": 2**63 - 1}),
                             ("consistency", {"old": 2**62, "new": 2**62})):
        answer = client.get(f"/v1/audit/proof/{endpoint}", params=params, headers=auditor)
        assert answer.status_code == 422, (params, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    backwards = client.get("/v1/audit/report", params={"from": "2026-02-01", "to": "2026-01-01"}, headers=auditor)
    assert backwards.status_code == 422 and "--" not in backwards.json()["detail"]

    url = initialized.settings.resolved_database_url
    _execute(url, "DELETE FROM audit_personal WHERE leaf_index = 4")
    _execute(url, "DELETE FROM audit_entries WHERE leaf_index = 4")
    lost = client.get("/v1/audit/proof/inclusion", params={"index": 4}, headers=auditor)
    assert lost.status_code == 500 and lost.json()["type"] == "urn:hallmark:problem:audit_integrity", lost.text
    assert "backup" in lost.json()["hint"]
    exported = run_cli(["audit", "export", str(tmp_path / "export")], initialized.env)
    assert exported.returncode == 4, exported.stdout + exported.stderr
    assert "integrity failure" in exported.stderr and "entry 4" in exported.stderr, exported.stderr
    assert "new or empty directory" not in exported.stderr
    assert not (tmp_path / "export").exists()  # the directory it made is gone again


def test_verify_names_what_it_cannot_read(sqlite_initialized, tmp_path: Path) -> None:
    env = sqlite_initialized.env
    missing = run_cli(["audit", "verify", str(tmp_path / "nonexistent")], env)
    assert missing.returncode == 2 and "no such directory" in missing.stderr, missing.stderr
    export = tmp_path / "export"
    assert run_cli(["audit", "export", str(export)], env).returncode == 0
    binary = tmp_path / "clip.mp4"
    binary.write_bytes(b"\x00\x00\x00\x18ftypmp42\xff\xfe\x80")
    unreadable = run_cli(["audit", "verify", str(export), "--key", str(sqlite_initialized.settings.paths.log_pub),
                          "--checkpoint", str(binary)], env)
    assert unreadable.returncode == 2 and "clip.mp4" in unreadable.stderr and "not a text file" in unreadable.stderr
    bad_key = run_cli(["audit", "verify", str(export), "--key", str(binary)], env)
    assert bad_key.returncode == 2 and "neither 32 raw bytes" in bad_key.stderr, bad_key.stderr


def test_a_verifier_key_string_with_a_plus_in_its_base64_is_taken_as_a_key() -> None:
    """`--key` took a string only when it held exactly two "+"; a key whose base64 holds one more (most keys) was
    called "no such file", and the export test passed or failed by the luck of the key drawn."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from api.cli.audit import _read_given_key
    from registry.audit.checkpoint import verifier_key
    from registry.audit.export import read_public_key

    strings = []
    for seed in range(16):
        public = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32).public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        strings.append((verifier_key("log.example/test", public), public))
    with_plus = [(text, public) for text, public in strings if text.count("+") > 2]
    assert with_plus
    for text, public in with_plus:
        assert read_public_key(_read_given_key(text)) == (public, "log.example/test")


def test_init_on_a_replaced_database_shows_the_new_admin_key_and_says_the_log_was_not_checkpointed(
        tmp_path: Path) -> None:
    """A fresh database beside a data dir whose log key already signed a longer log: `init` used to create the
    admin, then fail on the checkpoint, so the admin's key (shown once) was never shown."""
    import os

    data = tmp_path / "data"
    env = {**os.environ, "HALLMARK_DATA_DIR": str(data), "PYTHONPATH": str(ROOT)}
    for name in ("HALLMARK_CONFIG", "HALLMARK_DATABASE_URL"):
        env.pop(name, None)
    assert run_cli(["init"], env).returncode == 0
    assert run_cli(["accounts", "create", "zed"], env).returncode == 0
    assert run_cli(["audit", "checkpoint"], env).returncode == 0
    (data / "hallmark.db").rename(tmp_path / "old.db")
    again = run_cli(["init"], env)
    assert again.returncode == 0, again.stderr
    assert "Admin API key" in again.stdout and "hm_" in again.stdout
    assert "The audit log was not checkpointed" in again.stdout and "log.state away" in again.stdout
