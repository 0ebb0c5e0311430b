"""`hallmark init`: the data dir, the database schema, the keys, the tiny model and the first admin key.

Idempotent: what exists is kept. `--force` makes new keys, but never destroys old ones: the old root certificate
moves to keys/trusted/ (clips signed before stay Trusted) and old secrets move to keys/retired/<time>/."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone

from api.settings import Settings
from guard.provenance.keys import make_ed25519_key, new_secret_key, write_private, write_public
from registry import Accounts, AuditLog, Database, Role


@dataclass
class InitResult:
    data_dir: str
    database: str
    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what the operator must act on (keystore.signing_warnings)
    admin_key: str | None = None


def initialize(settings: Settings, *, force: bool = False, admin_name: str = "admin") -> InitResult:
    paths = settings.paths
    result = InitResult(data_dir=str(paths.root), database=settings.public_view()["database_url"])
    for directory in (paths.root, paths.outputs, paths.tmp, paths.models):
        directory.mkdir(parents=True, exist_ok=True)
    paths.keys.mkdir(parents=True, exist_ok=True)
    paths.keys.chmod(0o700)

    database = Database(settings.resolved_database_url)
    try:
        before = database.migrate()
        head = database.head_revision()
        if before is None:
            result.created.append(f"database schema (revision {head})")
        elif before != head:
            result.created.append(f"database schema migration {before} -> {head}")
        else:
            result.kept.append(f"database schema (revision {head}, the newest)")
        if force:
            _retire_keys(settings)
        _ensure_signing_keys(settings, result)
        # The watermark secret, the face key and the log key are never retired by --force: the watermark secret is
        # replaced by `hallmark keys rotate-watermark`, which keeps the old one for reading (a plain new one would
        # leave every clip released so far untraceable), a new face key would lose the sealed face templates, and a
        # new log key would break the audit log's continuity with every checkpoint already published.
        _ensure_secret(paths.watermark_key, "watermark secret key", new_secret_key, result)
        _ensure_secret(paths.face_key, "face template key", new_secret_key, result)
        if not paths.log_key.exists():
            private, public = make_ed25519_key()
            write_private(paths.log_key, private)
            write_public(paths.log_pub, public)
            result.created.append("audit log signing key (Ed25519)")
        else:
            result.kept.append("audit log signing key")
        if settings.generator == "tiny":
            from generator.tiny import tiny_generator

            existed = (paths.tiny_model / "HALLMARK_TINY_VERSION").is_file()
            tiny_generator(paths.tiny_model)  # builds it when missing or outdated
            (result.kept if existed else result.created).append("tiny video model")
        with database.session() as session:
            accounts = Accounts(session)
            admin = next((a for a in accounts.list() if a.role == Role.admin), None)
            if admin is None:
                admin = accounts.create(admin_name, Role.admin)
                result.admin_key = accounts.issue_key(admin)
                AuditLog(session).append("account.created", subject=admin.id, role=Role.admin,
                                         personal={"name": admin.name})
                AuditLog(session).append("api_key.created", subject=admin.id)
                result.created.append(f"admin account {admin.name!r} and its API key")
            else:
                result.kept.append(f"admin account {admin.name!r}")
            AuditLog(session).append("system.initialized", forced=force)
    finally:
        database.dispose()
    _sign_checkpoint(settings, result)
    return result


def _sign_checkpoint(settings: Settings, result: InitResult) -> None:
    """Sign a checkpoint of the log as it now is. This also writes keys/log.state, the copy outside the database
    of what the log key last signed, so an install upgraded from before that file existed is protected from its
    first `init`. When the stored log no longer extends what was signed (a restored or replaced database, or a
    rewritten one), nothing is signed and `init` says so, but still finishes: the rest of the set-up, such as a
    new admin key that is shown only now, must not be lost to it."""
    from api.audit import checkpoint, state_file
    from api.context import Hallmark
    from registry.audit.tree import AuditIntegrityError

    hm = Hallmark(settings)
    try:
        signed = checkpoint(hm)
    except AuditIntegrityError as exc:
        result.warnings.append(
            f"The audit log was not checkpointed: {exc.message} If this database was replaced on purpose (a new "
            f"log under the same key), move {state_file(hm)} away; otherwise restore the database from a backup "
            "and run `hallmark audit verify --database`.")
        return
    finally:
        hm.close()
    result.created.append(f"audit log checkpoint (size {signed.size})")


def _ensure_signing_keys(settings: Settings, result: InitResult) -> None:
    from api.keystore import ensure_signing_keys, signing_warnings  # the key store's own rules: init and `keys
    # init` agree

    notes = ensure_signing_keys(settings).notes
    result.warnings += signing_warnings(settings)
    for note in notes:  # e.g. "local root CA kept", "local root CA created"
        if note.endswith(" kept"):
            result.kept.append(f"C2PA {note.removesuffix(' kept')}")
        else:
            result.created.append(f"C2PA {note.removesuffix(' created')}")


def _ensure_secret(path, what: str, make, result: InitResult) -> None:  # type: ignore[no-untyped-def]
    if path.exists():
        result.kept.append(what)
        return
    write_private(path, make())
    result.created.append(what)


def _retire_keys(settings: Settings) -> None:
    paths = settings.paths
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    retired = paths.keys / "retired" / stamp
    if paths.ca_cert.exists():
        trusted = paths.keys / "trusted"
        trusted.mkdir(exist_ok=True)
        shutil.copy2(paths.ca_cert, trusted / f"root-{stamp}.pem")
    for path in (paths.ca_cert, paths.ca_key, paths.signer_chain, paths.signer_key):  # C2PA signing keys only
        if path.exists():
            retired.mkdir(parents=True, exist_ok=True)
            retired.chmod(0o700)
            path.replace(retired / path.name)
