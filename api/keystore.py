"""The data dir's C2PA keys and trust store, as `hallmark keys` manages them.

    keys/ca.pem, ca.key          the local root CA (`hallmark init`, `keys init`, `keys rotate --ca`)
    keys/signer.pem, signer.key  the signing chain (leaf first) and its key; no signer.key with a KMS/HSM callback
    keys/trusted/*.pem           more trust anchors: roots kept from earlier rotations and the operator's roots
    keys/retired/<time>/         replaced keys, never deleted (0700)
    keys/watermark.key           the watermark secret new clips are marked with
    keys/watermark-retired/<time>.key   earlier watermark secrets (`keys rotate-watermark`): read with, never marked

Nothing is destroyed: a rotation retires the old files and keeps the old root trusted, so clips signed before
still verify as Trusted. Any new signer is proven before it is installed: it signs a small clip that must read
back as Trusted against the trust store, the same check a generation must pass before release."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from api.context import Hallmark
from api.settings import Settings
from guard.errors import KeyMaterialError
from guard.marks import watermark_key_id
from guard.media import Frame, VideoWriter
from guard.provenance import build_manifest, callback_signer, load_sign_callback, read_c2pa, sign_video, trust_context
from guard.provenance.signing import pem_signer
from guard.provenance.keys import (
    IssuedCertificate,
    as_pkcs8,
    certificate_summary,
    check_signing_credential,
    fingerprint,
    is_ca,
    issue_signing_certificate,
    load_certificates,
    make_root_ca,
    new_secret_key,
    read_secret,
    write_private,
    write_public,
)
from guard.provenance.manifest import ManifestFacts


@dataclass
class KeyChange:
    """What a `hallmark keys` command did (printed by the CLI, recorded in the audit log)."""

    action: str
    signer: list[dict[str, Any]] = field(default_factory=list)
    retired_to: str | None = None
    trusted_added: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    watermark_key_ids: list[str] = field(default_factory=list)  # rotate-watermark: the new key's id, then the old


EXPIRY_WARNING = timedelta(days=30)  # warn this long before the signing certificate expires


def signing_warnings(settings: Settings, now: datetime | None = None) -> list[str]:
    """What the operator must act on before clips stop verifying, said by `init`, `keys list`, `serve` and
    `worker`. Without a timestamp authority a C2PA validator checks the certificate at the time it reads the clip,
    so every clip signed with this certificate reads as expired once the certificate is: a timestamp proves the
    signature was made while the certificate was valid."""
    if not settings.paths.signer_chain.exists():
        return []
    leaf = load_certificates(settings.paths.signer_chain.read_bytes(), "signing certificate chain")[0]
    until = leaf.not_valid_after_utc
    left = until - (now or datetime.now(timezone.utc))
    warnings = []
    if left <= timedelta(0):
        warnings.append(f"The signing certificate expired on {until:%Y-%m-%d}: generations cannot be signed. "
                        "Run `hallmark keys rotate` (or import a renewed chain).")
    elif left <= EXPIRY_WARNING:
        warnings.append(f"The signing certificate expires on {until:%Y-%m-%d} ({left.days} days): run "
                        "`hallmark keys rotate` (or import a renewed chain) before then.")
    if not settings.tsa_url:
        warnings.append(f"No timestamp authority is set (HALLMARK_TSA_URL), so clips signed with this certificate "
                        f"will verify as expired after {until:%Y-%m-%d}; set an RFC 3161 timestamp authority for "
                        "production.")
    return warnings


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def ensure_signing_keys(settings: Settings) -> KeyChange:
    """Make the local root CA and a signing certificate where they are missing; `hallmark init` and `hallmark keys
    init` both come here. A chain whose key a KMS/HSM callback holds (HALLMARK_SIGNER_CALLBACK) is kept although
    no key file sits beside it: replacing it with a local certificate would break every signature the callback
    makes."""
    paths = settings.paths
    change = KeyChange("init")
    if paths.ca_cert.exists() and paths.ca_key.exists():
        change.notes.append("local root CA kept")
        ca = IssuedCertificate(paths.ca_cert.read_bytes(), read_secret(paths.ca_key, "local CA key"))
    else:
        ca = make_root_ca(settings.operator_name)
        KeyStore._install(paths.ca_key, ca.private_key_pem, private=True)
        KeyStore._install(paths.ca_cert, ca.certificate_pem, private=False)
        change.notes.append("local root CA created")
    if paths.signer_chain.exists() and (paths.signer_key.exists() or settings.signer_callback):
        change.notes.append("signing certificate kept")
    elif settings.signer_callback:
        raise KeyMaterialError("A KMS/HSM callback signs, but there is no certificate chain for its key.",
                               hint="Have a CA certify the KMS key, then `hallmark keys import --chain "
                               "CHAIN.pem`.", status=422)
    else:
        signer = issue_signing_certificate(ca, settings.operator_name)
        KeyStore._install(paths.signer_key, signer.private_key_pem, private=True)
        KeyStore._install(paths.signer_chain, signer.certificate_pem, private=False)
        change.notes.append("signing certificate issued by the local CA")
    change.signer = certificate_summary(paths.signer_chain.read_bytes())
    return change


class KeyStore:
    def __init__(self, hm: Hallmark) -> None:
        self.hm = hm
        self.settings: Settings = hm.settings
        self.paths = hm.settings.paths

    # --- reading -----------------------------------------------------------------------------------------------
    def anchors(self) -> list[dict[str, Any]]:
        rows = []
        for path in self.hm.trust_anchor_files():
            source = ("local root" if path == self.paths.ca_cert else
                      "data dir (keys/trusted)" if path.parent == self.paths.trusted else "HALLMARK_TRUST_ANCHORS")
            try:
                certs = certificate_summary(path.read_bytes())
            except (OSError, ValueError) as exc:
                rows.append({"source": source, "path": str(path), "error": str(exc)})
                continue
            for cert in certs:
                rows.append({"source": source, "path": str(path), **cert})
        return rows

    def status(self) -> dict[str, Any]:
        s, p = self.settings, self.paths
        signer: dict[str, Any] = {
            "kind": "callback (KMS/HSM)" if s.signer_callback else "key file",
            "callback": s.signer_callback,
            "alg": s.signer_alg,
            "chain_path": str(p.signer_chain),
            "chain": certificate_summary(p.signer_chain.read_bytes()) if p.signer_chain.exists() else [],
        }
        if not s.signer_callback:
            signer["key_path"] = str(p.signer_key)
            signer["key_mode"] = oct(p.signer_key.stat().st_mode & 0o777) if p.signer_key.exists() else None
        local_ca = {"path": str(p.ca_cert), "can_issue": p.ca_key.exists(),
                    "certificate": certificate_summary(p.ca_cert.read_bytes()) if p.ca_cert.exists() else []}
        retired = sorted(d.name for d in p.retired.iterdir()) if p.retired.is_dir() else []
        return {"signer": signer, "local_ca": local_ca, "trust_anchors": self.anchors(),
                "tsa_url": s.tsa_url, "retired": retired, "watermark": self.watermark_status()}

    def watermark_status(self) -> dict[str, Any]:
        """The watermark keys by their public ids: the one new clips are marked with, and the retired ones that
        detection still reads with (newest first)."""
        try:
            current = {"source": "HALLMARK_WATERMARK_KEY" if self.settings.watermark_key is not None else
                       str(self.paths.watermark_key), "key_id": watermark_key_id(self.hm.watermark_key)}
            retired = [{"label": label, "key_id": watermark_key_id(key)}
                       for label, key in self.hm.watermark_retired_keys]
        except KeyMaterialError as exc:
            return {"error": exc.message}
        return {"current": current, "retired": retired}

    # --- changing ----------------------------------------------------------------------------------------------
    def init(self) -> KeyChange:
        """Make the local root CA and a signing certificate where they are missing (what `hallmark init` does)."""
        return ensure_signing_keys(self.settings)

    def rotate(self, *, new_ca: bool = False) -> KeyChange:
        """A new signing key and certificate from the local CA (and, with `new_ca`, a new local root whose
        predecessor stays a trust anchor). Clips signed before keep verifying as Trusted."""
        if self.settings.signer_callback:
            raise KeyMaterialError("The signing key is held by a KMS/HSM callback; Hallmark cannot rotate it.",
                                   hint="Rotate the key in the KMS, then `hallmark keys import --chain NEW.pem`.")
        if not self.paths.ca_key.exists():
            raise KeyMaterialError("There is no local CA key to issue a new signing certificate with.",
                                   hint="Import the new chain from your CA with `hallmark keys import`, or make "
                                   "a new local root with `hallmark keys rotate --ca`." if not new_ca else
                                   "Run `hallmark keys init` first.")
        change = KeyChange("rotate-ca" if new_ca else "rotate")
        if self.paths.signer_chain.exists() and self.paths.ca_cert.exists():
            current = certificate_summary(self.paths.signer_chain.read_bytes())[0]
            local = certificate_summary(self.paths.ca_cert.read_bytes())[0]
            if current["issuer"] != local["subject"]:  # an imported chain: say it goes, rather than drop it quietly
                change.notes.append(f"the imported chain (issued by {current['issuer']}) is replaced by a "
                                    "certificate from the local CA; `hallmark keys import` brings yours back")
        stamp = _stamp()
        if new_ca:
            ca = make_root_ca(self.settings.operator_name)
        else:
            ca = IssuedCertificate(self.paths.ca_cert.read_bytes(), read_secret(self.paths.ca_key, "local CA key"))
        signer = issue_signing_certificate(ca, self.settings.operator_name)
        self._prove(pem_signer(signer.certificate_pem, signer.private_key_pem),
                    self.hm.trust_anchor_pems + [ca.certificate_pem])
        retired = self._retire(stamp, [self.paths.signer_chain, self.paths.signer_key]
                               + ([self.paths.ca_key] if new_ca else []))
        if new_ca and self.paths.ca_cert.exists():
            kept = self.paths.trusted / f"root-{stamp}.pem"
            self.paths.trusted.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.paths.ca_cert, kept)
            shutil.copy2(self.paths.ca_cert, retired / self.paths.ca_cert.name)
            change.trusted_added.append(str(kept))
            self._install(self.paths.ca_key, ca.private_key_pem, private=True)
            self._install(self.paths.ca_cert, ca.certificate_pem, private=False)
        self._install(self.paths.signer_key, signer.private_key_pem, private=True)
        self._install(self.paths.signer_chain, signer.certificate_pem, private=False)
        change.retired_to = str(retired)
        change.signer = certificate_summary(signer.certificate_pem)
        return change

    def rotate_watermark(self) -> KeyChange:
        """A new watermark secret for new clips. The old one moves to keys/watermark-retired/, which detection
        still reads with, so clips released before keep resolving; it is never used to mark again. Why rotate: the
        secret leaked (whoever holds it can read and embed marks), or a key-hygiene schedule."""
        if self.settings.watermark_key is not None:
            raise KeyMaterialError("The watermark secret comes from HALLMARK_WATERMARK_KEY; Hallmark cannot rotate "
                                   "a key it does not hold.",
                                   hint="Set HALLMARK_WATERMARK_KEY to a new secret and add the old one to "
                                   "HALLMARK_WATERMARK_RETIRED_KEYS, then restart every server and worker.")
        if self.settings.watermark_method != "hallmark":
            raise KeyMaterialError(f"The watermark method {self.settings.watermark_method} reads with the current "
                                   "key only: after a rotation every clip it marked would decode to a wrong "
                                   "payload.", hint="Set HALLMARK_WATERMARK_METHOD=hallmark (the default), which "
                                   "keeps reading with retired keys, before rotating.")
        old = self.hm.watermark_key  # also checks that it exists and is long enough
        new = new_secret_key()
        retired = self.paths.watermark_retired / f"{_stamp()}.key"
        # The old secret is kept first, so that no moment exists in which it is gone; then the new one replaces
        # it atomically.
        write_private(retired, old)
        self.paths.watermark_retired.chmod(0o700)
        self._install(self.paths.watermark_key, new, private=True)
        change = KeyChange("rotate-watermark", retired_to=str(retired),
                           watermark_key_ids=[watermark_key_id(new), watermark_key_id(old)])
        change.notes.append("restart every server and worker: a running process keeps marking with the key it "
                            "started with")
        change.notes.append("clips marked before still resolve; their verification says the mark was read with "
                            f"the key retired at {retired.stem}")
        return change

    def import_chain(self, chain_pem: bytes, key_pem: bytes | None, *, trust_root: bytes | None = None) -> KeyChange:
        """Install an operator's signing chain (leaf first) and key (PEM). Without a key the configured KMS/HSM
        callback signs. The chain must verify as Trusted: its root must be in the trust store or given here."""
        if key_pem is None and not self.settings.signer_callback:
            raise KeyMaterialError("A private key is needed (--key), unless the key is held by a KMS/HSM.",
                                   hint="Set HALLMARK_SIGNER_CALLBACK=package.module:function to sign through a "
                                   "KMS/HSM, then import only the chain.")
        if key_pem is not None:
            key_pem = as_pkcs8(key_pem)
        check_signing_credential(chain_pem, key_pem, self.settings.signer_alg)
        extra: list[bytes] = []
        if trust_root is not None:
            roots = load_certificates(trust_root, "trust root")
            if not all(is_ca(cert) for cert in roots):
                raise KeyMaterialError("The trust root given is not a CA certificate.",
                                       hint="Give the root CA certificate that issued the signing chain.", status=422)
            extra.append(trust_root)
        if key_pem is not None:
            signer = pem_signer(chain_pem, key_pem, alg=self.settings.signer_alg)
        else:
            signer = callback_signer(load_sign_callback(self.settings.signer_callback or ""), chain_pem,
                                     alg=self.settings.signer_alg)
        self._prove(signer, self.hm.trust_anchor_pems + extra)
        change = KeyChange("import")
        stamp = _stamp()
        change.retired_to = str(self._retire(stamp, [self.paths.signer_chain, self.paths.signer_key]))
        if trust_root is not None:
            change.trusted_added.append(str(self._add_anchor(trust_root, stamp)))
        if key_pem is not None:
            self._install(self.paths.signer_key, key_pem, private=True)
        else:
            # The KMS/HSM signs from now on; no stale private key stays in use (it is kept in the retired dir).
            self.paths.signer_key.unlink(missing_ok=True)
            change.notes.append("signing through the KMS/HSM callback; keys/signer.key retired")
        self._install(self.paths.signer_chain, chain_pem, private=False)
        change.signer = certificate_summary(chain_pem)
        return change

    def trust_add(self, pem: bytes) -> KeyChange:
        certs = load_certificates(pem, "trust anchor")
        if not all(is_ca(cert) for cert in certs):
            raise KeyMaterialError("A trust anchor must be a CA certificate (basicConstraints CA:TRUE).",
                                   hint="Give the root (or intermediate) CA certificate, not a signing certificate.",
                                   status=422)
        known = {row.get("sha256") for row in self.anchors()}
        change = KeyChange("trust-add")
        if all(fingerprint(cert) in known for cert in certs):
            change.notes.append("already trusted")
            return change
        change.trusted_added.append(str(self._add_anchor(pem, _stamp())))
        return change

    def trust_remove(self, sha256_prefix: str) -> KeyChange:
        prefix = sha256_prefix.lower().replace(":", "")
        if len(prefix) < 8:
            raise KeyMaterialError("Give at least 8 hex digits of the anchor's SHA-256 fingerprint.",
                                   hint="`hallmark keys list` shows them.", status=422)
        matches = [path for path in (sorted(self.paths.trusted.glob("*.pem")) if self.paths.trusted.is_dir() else [])
                   if any(fingerprint(c).startswith(prefix) for c in load_certificates(path.read_bytes(), str(path)))]
        if not matches:
            raise KeyMaterialError(f"No anchor in keys/trusted/ has a fingerprint starting {prefix}.",
                                   hint="The local root and HALLMARK_TRUST_ANCHORS entries are not removed here.",
                                   status=422)
        change = KeyChange("trust-remove")
        retired = self._retire(_stamp(), matches)
        change.retired_to = str(retired)
        change.notes.append("clips signed under this root now verify as Valid (untrusted), not Trusted")
        return change

    # --- helpers -----------------------------------------------------------------------------------------------
    def _prove(self, signer: Any, anchors: list[bytes]) -> None:
        """Sign a small clip with `signer` and read it back: it must be Trusted against `anchors`."""
        with tempfile.TemporaryDirectory(prefix="hallmark-keycheck-") as tmp:
            source, signed = Path(tmp) / "probe.mp4", Path(tmp) / "signed.mp4"
            with VideoWriter(source, 64, 64, 8, preset="ultrafast") as writer:
                for shade in (32, 96):
                    writer.write(Frame.from_rgb(np.full((64, 64, 3), shade, dtype=np.uint8)))
            facts = ManifestFacts(generation_id="key-check", operator=self.settings.operator_name,
                                  claim_generator_version="key-check", model_backend="none", model_name="none",
                                  model_version="0", model_sha256=None, watermark_alg="org.hallmark.key-check",
                                  watermark_payload_hex="00" * 8, duration_ms=250, policy_version="none")
            sign_video(source, signed, build_manifest(facts), signer)
            report = read_c2pa(signed, trust_context(anchors))
        if report.state != "Trusted":
            raise KeyMaterialError(
                f"A test signature with this credential verifies as {report.state} "
                f"({', '.join(report.failure_codes) or 'no failure code'}), not Trusted; Hallmark releases only "
                "clips that verify as Trusted, so nothing was changed.",
                hint="Add the chain's root CA with --trust-root ROOT.pem (or `hallmark keys trust add`).", status=422)

    def _retire(self, stamp: str, paths: list[Path]) -> Path:
        retired = self.paths.retired / stamp
        retired.mkdir(parents=True, exist_ok=True)
        self.paths.retired.chmod(0o700)
        retired.chmod(0o700)
        for path in paths:
            if path.exists():
                shutil.copy2(path, retired / path.name)
                if path.parent == self.paths.trusted:
                    path.unlink()
        return retired

    def _add_anchor(self, pem: bytes, stamp: str) -> Path:
        self.paths.trusted.mkdir(parents=True, exist_ok=True)
        target = self.paths.trusted / f"anchor-{stamp}.pem"
        write_public(target, pem)
        return target

    @staticmethod
    def _install(path: Path, data: bytes, *, private: bool) -> None:
        """Replace a key file atomically: written beside it (0600 from the first byte for secrets), then renamed."""
        partial = path.with_name(f".{path.name}.new")
        partial.unlink(missing_ok=True)
        if private:
            write_private(partial, data)
        else:
            partial.parent.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(data)
        partial.replace(path)
