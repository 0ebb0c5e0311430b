"""The export directory an outsider verifies, and its verifier (no database: files and the public key only).

    entries.jsonl    one line per entry, in log order:
                     {"index": N, "leaf_b64": <the exact leaf bytes>, "event": <the leaf, decoded, for people>,
                      "personal": {"prompt": {"value": "...", "salt_b64": "..."}}}   (absent once erased)
    checkpoint       the signed checkpoint (C2SP tlog-checkpoint signed note) the entries must hash to
    log.pub          the log's Ed25519 public key, 32 raw bytes
    log.vkey         the same key as a signed-note verifier key string (name+keyid+base64)
    leaf-hashes.bin  the RFC 6962 leaf hashes, 32 bytes each, in log order: a diagnostic copy. Once it hashes to
                     the signed root it is authentic, and lets the verifier name exactly which line was changed,
                     deleted, inserted or moved. The verdict never depends on it.

To check an export with your own code: for each line, SHA-256(0x00 || base64-decode(leaf_b64)); build the RFC
6962 tree over those hashes; compare its root and size with the checkpoint's third and second lines; verify the
checkpoint's Ed25519 signature (c2sp.org/signed-note) with log.pub.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from registry.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    key_id,
    open_checkpoint,
    parse_verifier_key,
    verifier_key,
)
from registry.audit.leaf import LeafError, commitment, decode_leaf
from registry.audit.merkle import HASH_SIZE, Frontier, leaf_hash, root_of

ENTRIES = "entries.jsonl"
CHECKPOINT = "checkpoint"
PUBLIC_KEY = "log.pub"
VERIFIER_KEY = "log.vkey"
LEAF_HASHES = "leaf-hashes.bin"


class ExportError(ValueError):
    """The export directory cannot be written, or is not an export at all."""


# --- writing ----------------------------------------------------------------------------------------------------
def entry_line(index: int, leaf: bytes, personal: dict[str, Any] | None) -> str:
    line: dict[str, Any] = {"index": index, "leaf_b64": base64.b64encode(leaf).decode(),
                            "event": json.loads(leaf)}
    if personal:
        line["personal"] = {name: {"value": item["value"], "salt_b64": item["salt"]}
                            for name, item in sorted(personal.items())}
    return json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n"


def _private(path: Path, mode: str) -> Any:
    """Open a new file only its owner can read: an export holds prompts, names and consent evidence."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), mode,
                     **({"encoding": "utf-8"} if "b" not in mode else {}))


def write_export(directory: Path, *, note: str, origin: str, public_key: bytes,
                 entries: Iterable[tuple[int, bytes, dict[str, Any] | None]], leaf_hashes: Iterable[bytes]) -> int:
    """Write an export into `directory` (new or empty; a new one is made 0700, the files 0600). Files are written
    under temporary names and renamed at the end, so a failed export leaves no file that looks complete; a
    directory it made is removed again. Returns the number of entries."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ExportError(f"{directory} exists and is not an empty directory.")
    created = not directory.exists()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = {name: directory / f".{name}.partial" for name in (ENTRIES, LEAF_HASHES)}
    finished = False
    try:
        count = 0
        with _private(partial[ENTRIES], "w") as handle:
            for index, leaf, personal in entries:
                if index != count:
                    raise ExportError(f"the log returned entry {index} where entry {count} belongs")
                handle.write(entry_line(index, leaf, personal))
                count += 1
        with _private(partial[LEAF_HASHES], "wb") as handle:
            for value in leaf_hashes:
                handle.write(value)
        for name, path in partial.items():
            path.replace(directory / name)
        with _private(directory / PUBLIC_KEY, "wb") as handle:
            handle.write(public_key)
        with _private(directory / VERIFIER_KEY, "w") as handle:
            handle.write(verifier_key(origin, public_key) + "\n")
        with _private(directory / CHECKPOINT, "w") as handle:  # last: its presence marks a whole export
            handle.write(note)
        finished = True
    finally:
        for path in partial.values():
            path.unlink(missing_ok=True)
        if not finished:  # nothing that looks like an export, or a directory the caller did not have, is left
            for name in (ENTRIES, LEAF_HASHES, PUBLIC_KEY, VERIFIER_KEY, CHECKPOINT):
                (directory / name).unlink(missing_ok=True)
            if created:
                shutil.rmtree(directory, ignore_errors=True)
    return count


# --- verifying --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    where: str  # e.g. "line 7 (entry 6)", "checkpoint"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class ExportReport:
    checkpoint: Checkpoint | None = None
    key_id: str | None = None
    # "given": the key the verifier passed (the operator's published key), so the verdict says who signed;
    # "export": log.pub from the export itself, which proves only that the export is consistent with itself
    key_source: str = "export"
    entries: int = 0
    personal_revealed: int = 0
    personal_erased: int = 0
    earlier_checkpoints: list[int] = field(default_factory=list)  # sizes found consistent
    problems: list[Problem] = field(default_factory=list)
    more_problems: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and self.checkpoint is not None

    @property
    def authenticated(self) -> bool:
        return self.ok and self.key_source == "given"

    def as_dict(self) -> dict[str, Any]:
        cp = self.checkpoint
        return {
            "ok": self.ok,
            "authenticated": self.authenticated,
            "key_source": self.key_source,
            "origin": cp.origin if cp else None,
            "size": cp.size if cp else None,
            "root_hash": base64.b64encode(cp.root_hash).decode() if cp else None,
            "key_id": self.key_id,
            "entries": self.entries,
            "personal_revealed": self.personal_revealed,
            "personal_erased": self.personal_erased,
            "earlier_checkpoints": self.earlier_checkpoints,
            "problems": [{"where": p.where, "message": p.message} for p in self.problems],
            "more_problems": self.more_problems,
        }


class _Verifier:
    def __init__(self, report: ExportReport, max_problems: int) -> None:
        self.report = report
        self.max_problems = max_problems
        self.shift: int | None = None  # found - position of the previous located line (a deletion shifts all)
        self.shifted: list[int] = []  # later lines shifted the same way, summarized in one problem

    def shifted_line(self, number: int, shift: int | None) -> bool:
        """Whether this line only continues the previous line's shift (then it is summarized, not repeated)."""
        if shift is not None and shift == self.shift:
            self.shifted.append(number)
            return True
        self.flush_shifted()
        self.shift = shift
        return False

    def flush_shifted(self) -> None:
        if self.shifted:
            first, last = self.shifted[0], self.shifted[-1]
            self.problem(f"lines {first}-{last}" if last > first else f"line {first}",
                         f"shifted the same way as the line before ({len(self.shifted)} line(s))")
        self.shifted = []

    def problem(self, where: str, message: str) -> None:
        if len(self.report.problems) < self.max_problems:
            self.report.problems.append(Problem(where, message))
        else:
            self.report.more_problems += 1


def read_public_key(blob: bytes) -> tuple[bytes, str | None]:
    """(32-byte key, origin or None) from a key as published: 32 raw bytes (log.pub), or the signed-note verifier
    key string (log.vkey, `hallmark audit checkpoint --key`), which also names the log."""
    if len(blob) == 32:
        return blob, None
    try:
        name, key = parse_verifier_key(blob.decode("ascii"))
    except (UnicodeDecodeError, CheckpointError) as exc:
        detail = exc if isinstance(exc, CheckpointError) else "not text"
        raise ExportError(f"the log public key is neither 32 raw bytes (log.pub) nor a verifier key string "
                          f"(log.vkey): {detail}") from exc
    return key, name


def _read_key(directory: Path, public_key: bytes | None) -> tuple[bytes, str | None]:
    if public_key is None:
        path = directory / PUBLIC_KEY
        if not path.is_file():
            raise ExportError(f"{path} is missing; pass the log's public key.")
        public_key = path.read_bytes()
    return read_public_key(public_key)


def _reference_hashes(directory: Path, checkpoint: Checkpoint, check: _Verifier) -> list[bytes] | None:
    path = directory / LEAF_HASHES
    if not path.is_file():
        return None
    blob = path.read_bytes()
    hashes = [blob[i:i + HASH_SIZE] for i in range(0, len(blob) - len(blob) % HASH_SIZE, HASH_SIZE)]
    if len(blob) % HASH_SIZE or len(hashes) != checkpoint.size or root_of(hashes)[1] != checkpoint.root_hash:
        check.problem(LEAF_HASHES, "does not hash to the checkpoint's root (it was altered); lines can only be "
                                   "checked as a whole")
        return None
    return hashes


def verify_export(directory: Path, *, public_key: bytes | None = None, origin: str | None = None,
                  earlier: Iterable[str] = (), max_problems: int = 20) -> ExportReport:
    """Check an export against its signed checkpoint (and any earlier checkpoints the auditor kept). Problems
    name the line and entry; the verdict is `report.ok`."""
    report = ExportReport(key_source="export" if public_key is None else "given")
    check = _Verifier(report, max_problems)
    if not directory.is_dir():
        raise ExportError(f"{directory}: no such directory." if not directory.exists()
                          else f"{directory} is not a directory.")
    key, named = _read_key(directory, public_key)
    if named is not None and origin is not None and named != origin:
        raise ExportError(f"the verifier key is for log {named!r}, not {origin!r}")
    origin = origin or named
    note_path, entries_path = directory / CHECKPOINT, directory / ENTRIES
    if not note_path.is_file() or not entries_path.is_file():
        raise ExportError(f"{directory} is not an audit export (it needs {CHECKPOINT} and {ENTRIES}).")
    try:
        checkpoint = open_checkpoint(note_path.read_text(encoding="utf-8"), key, origin=origin)
    except (CheckpointError, UnicodeDecodeError) as exc:
        check.problem("checkpoint", str(exc))
        return report
    report.checkpoint, report.key_id = checkpoint, key_id(checkpoint.origin, key).hex()

    prefixes: dict[int, list[bytes]] = {}  # size -> roots of earlier checkpoints at that size
    for number, text in enumerate(earlier, 1):
        try:
            old = open_checkpoint(text, key, origin=checkpoint.origin)
        except CheckpointError as exc:
            check.problem(f"earlier checkpoint {number}", str(exc))
            continue
        if old.size > checkpoint.size:
            check.problem(f"earlier checkpoint {number}", f"has size {old.size}, larger than the exported "
                          f"{checkpoint.size}: the export is not the whole log")
            continue
        prefixes.setdefault(old.size, []).append(old.root_hash)

    reference = _reference_hashes(directory, checkpoint, check)
    where_is: dict[bytes, int] | None = None
    seen: set[int] = set()  # indexes of the log found in the file (with the authenticated hashes)
    frontier = Frontier()
    root_at_size = checkpoint.root_hash if checkpoint.size == 0 else None

    def check_prefix() -> None:
        for old_root in prefixes.get(frontier.size, []):
            if old_root == frontier.root():
                report.earlier_checkpoints.append(frontier.size)
            else:
                check.problem(f"earlier checkpoint of size {frontier.size}",
                              "does not match the first entries of this export: the log was rewritten")

    if 0 in prefixes:
        check_prefix()
    with entries_path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            position = number - 1
            where = f"line {number} (entry {position})"
            try:
                line = json.loads(raw)
                leaf = base64.b64decode(line["leaf_b64"], validate=True)
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, binascii.Error) as exc:
                check.problem(where, f"not an export line ({type(exc).__name__}: {exc})")
                leaf, line = raw, {}
            value = leaf_hash(leaf)
            frontier.append(value)
            report.entries += 1
            located = reference is not None and (position >= len(reference) or reference[position] != value)
            if located:
                where_is = where_is or {h: i for i, h in enumerate(reference)}
                found = where_is.get(value)
                if found is not None:
                    seen.add(found)
                if not check.shifted_line(number, None if found is None else found - position):
                    _locate(check, where, position, found, leaf)
            else:
                seen.add(position)
                check.shifted_line(number, None)
            _check_line(check, where, position, line, leaf, report, placed=not located)
            if frontier.size == checkpoint.size:
                root_at_size = frontier.root()
            check_prefix()

    check.flush_shifted()
    if reference is not None and len(seen) < checkpoint.size:
        missing = [index for index in range(checkpoint.size) if index not in seen]
        shown = ", ".join(str(index) for index in missing[:10]) + (", ..." if len(missing) > 10 else "")
        check.problem(ENTRIES, f"{len(missing)} of the log's entries {'is' if len(missing) == 1 else 'are'} not "
                      f"in the file (deleted or changed): {shown}")
    elif report.entries < checkpoint.size:
        check.problem(ENTRIES, f"has {report.entries} entries; the checkpoint covers {checkpoint.size}")
    elif report.entries > checkpoint.size:
        check.problem(f"line {checkpoint.size + 1}", f"{report.entries - checkpoint.size} line(s) beyond the "
                      f"checkpoint's size {checkpoint.size} (inserted)")
    if root_at_size is not None and root_at_size != checkpoint.root_hash:
        check.problem(ENTRIES, "the entries do not hash to the checkpoint's root hash: an entry was changed, "
                      "deleted, inserted or reordered" + ("" if report.problems else " (no single line could be "
                                                          "named; include leaf-hashes.bin to locate it)"))
    return report


def _locate(check: _Verifier, where: str, position: int, found: int | None, leaf: bytes) -> None:
    """Name what happened at a line whose leaf is not the one the log committed to at that place."""
    if found is None:
        try:
            claimed = decode_leaf(leaf)["index"]
        except LeafError:
            claimed = None
        if claimed == position:
            check.problem(where, "changed: this leaf is not the one the log committed to at this index")
        else:
            check.problem(where, "not an entry of this log (inserted or changed)")
    elif found > position:
        check.problem(where, f"entry {position} is missing here; this line holds entry {found} (deleted or "
                      "reordered)")
    else:
        check.problem(where, f"holds entry {found}, expected entry {position} (inserted, duplicated or reordered)")


def _check_line(check: _Verifier, where: str, position: int, line: dict[str, Any], leaf: bytes,
                report: ExportReport, *, placed: bool) -> None:
    """What can be checked within one line: the leaf's form, its index (unless the line was already located
    against the authenticated hashes), the readable copy, the personal data."""
    if not line:
        return
    if placed and line.get("index") != position:
        check.problem(where, f"is labelled entry {line.get('index')!r}; lines must be in log order")
    try:
        event = decode_leaf(leaf)
    except LeafError as exc:
        check.problem(where, f"the leaf is not a valid event: {exc}")
        return
    if placed and event["index"] != position:
        check.problem(where, f"the leaf is entry {event['index']} of the log (moved)")
    if line.get("event") != event:
        check.problem(where, "the readable 'event' differs from the leaf it claims to show")
    commitments = event["personal"]
    revealed = line.get("personal") or {}
    if not isinstance(revealed, dict):
        check.problem(where, "'personal' is not an object")
        return
    for name, item in revealed.items():
        try:
            matches = commitments.get(name) == commitment(base64.b64decode(item["salt_b64"], validate=True),
                                                          item["value"])
        except (KeyError, TypeError, binascii.Error, LeafError):
            matches = False
        if not matches:
            check.problem(where, f"the personal field {name!r} does not match the leaf's commitment")
    report.personal_revealed += sum(1 for name in revealed if name in commitments)
    report.personal_erased += sum(1 for name in commitments if name not in revealed)
