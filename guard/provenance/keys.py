"""Key material on disk: the local C2PA signing CA, the signing certificate, and raw secrets.

The local CA follows what c2pa-rs requires of a signing credential: the end-entity certificate has the
digitalSignature key usage, an Authority Key Identifier, an extended key usage (emailProtection, documentSigning)
and O= in its subject; the root is a CA with keyCertSign. Private keys are written 0600, created exclusively, and
never logged.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from guard.errors import KeyMaterialError

DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")


def write_private(path: Path, data: bytes, *, overwrite: bool = False) -> None:
    """Write a secret with mode 0600 from the first byte on (no window where it is world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if overwrite:
        path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def write_public(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_bytes(data)
    partial.replace(path)


def read_secret(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise KeyMaterialError(f"The {what} is missing ({path}).",
                               hint="Run `hallmark init` to create the data dir's keys.") from exc
    except PermissionError as exc:
        raise KeyMaterialError(f"The {what} at {path} is not readable by this user.",
                               hint="Run as the user that ran `hallmark init`, or fix the file's owner.") from exc
    except OSError as exc:  # a directory where the file should be, an I/O error
        raise KeyMaterialError(f"The {what} at {path} cannot be read ({exc.strerror or exc}).",
                               hint="Put the key file back there, or move what is there away.") from exc


def new_secret_key() -> bytes:
    return secrets.token_bytes(32)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _private_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def as_pkcs8(key_pem: bytes) -> bytes:
    """The key in PKCS#8 PEM, which c2pa-rs requires. `openssl ecparam -genkey` and many HSM exports write SEC1
    ("BEGIN EC PRIVATE KEY"); such a key passed the match against the certificate and then failed at the first
    signature, so it is converted on import. A key cryptography cannot read is left for the checks to report."""
    try:
        return _private_pem(serialization.load_pem_private_key(key_pem, password=None))
    except (ValueError, TypeError):
        return key_pem


@dataclass(frozen=True)
class IssuedCertificate:
    certificate_pem: bytes
    private_key_pem: bytes


def make_root_ca(organization: str, *, days: int = 3650) -> IssuedCertificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, f"{organization} Hallmark Root CA"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
    ])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return IssuedCertificate(_pem(cert), _private_pem(key))


def issue_signing_certificate(ca: IssuedCertificate, organization: str, *, common_name: str | None = None,
                              days: int = 397, not_before: dt.datetime | None = None,
                              lifetime: dt.timedelta | None = None,
                              public_key: ec.EllipticCurvePublicKey | None = None) -> IssuedCertificate:
    """An end-entity C2PA signing certificate issued by `ca`. `not_before` and `lifetime` (overrides `days`) let
    tests make certificates that expire. With `public_key` (a key held in a KMS/HSM) no private key is made and
    `private_key_pem` is empty."""
    ca_cert = x509.load_pem_x509_certificate(ca.certificate_pem)
    ca_key = serialization.load_pem_private_key(ca.private_key_pem, password=None)
    key = ec.generate_private_key(ec.SECP256R1()) if public_key is None else None
    subject_key = public_key if public_key is not None else key.public_key()  # type: ignore[union-attr]
    start = not_before or (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5))
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, common_name or f"{organization} Content Credentials"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
    ])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(ca_cert.subject).public_key(subject_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + (lifetime or dt.timedelta(days=days)))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return IssuedCertificate(_pem(cert) + ca.certificate_pem, _private_pem(key) if key is not None else b"")


def make_ed25519_key() -> tuple[bytes, bytes]:
    """(private PEM, raw 32-byte public key) for the audit log's checkpoint signatures."""
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return _private_pem(key), public


def certificate_summary(pem: bytes) -> list[dict[str, object]]:
    """Subject, issuer, serial and validity of each certificate in a PEM bundle (for `hallmark keys list`)."""
    summaries: list[dict[str, object]] = []
    now = dt.datetime.now(dt.timezone.utc)
    for cert in x509.load_pem_x509_certificates(pem):
        summaries.append({
            "ca": is_ca(cert),
            "days_left": (cert.not_valid_after_utc - now).days,
            "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(),
            "serial": format(cert.serial_number, "x"),
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "sha256": cert.fingerprint(hashes.SHA256()).hex(),
        })
    return summaries


def load_certificates(pem: bytes, what: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise KeyMaterialError(f"The {what} is not a PEM certificate file: {exc}",
                               hint="Give PEM text (-----BEGIN CERTIFICATE-----), leaf certificate first.",
                               status=422) from exc
    if not certs:
        raise KeyMaterialError(f"The {what} holds no certificate.", status=422)
    return certs


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


# The C2PA signature algorithms each kind of key can make (C2PA 2.x, "Digital signatures"), strongest match first.
CURVE_ALGS = {"secp256r1": ("es256",), "secp384r1": ("es384",), "secp521r1": ("es512",)}
RSA_ALGS = ("ps256", "ps384", "ps512")


def algorithms_for(public_key: object) -> tuple[str, ...]:
    """The C2PA algorithms (HALLMARK_SIGNER_ALG values) a certificate's key can sign with; () for none."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return CURVE_ALGS.get(public_key.curve.name, ())
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return ("ed25519",)
    if isinstance(public_key, rsa.RSAPublicKey):
        return RSA_ALGS
    return ()


def _key_kind(public_key: object) -> str:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"an ECDSA {public_key.curve.name} key"
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"an RSA-{public_key.key_size} key"
    return f"an {type(public_key).__name__.removesuffix('PublicKey').removeprefix('_')} key"


def check_signing_credential(chain_pem: bytes, key_pem: bytes | None, alg: str | None = None) -> x509.Certificate:
    """Check a signing chain (leaf first) and its private key against what c2pa-rs requires of a C2PA signer, and
    say every problem at once. Returns the leaf certificate. (The final word is a test signature read back: see
    `api.keystore`; this gives the clear reasons first.)"""
    chain = load_certificates(chain_pem, "signing certificate chain")
    leaf = chain[0]
    problems: list[str] = []
    now = dt.datetime.now(dt.timezone.utc)
    if is_ca(leaf):
        problems.append("the first certificate is a CA certificate; the chain must start with the signing "
                        "(end-entity) certificate")
    try:
        if not leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            problems.append("the signing certificate lacks the digitalSignature key usage")
    except x509.ExtensionNotFound:
        problems.append("the signing certificate has no key usage extension (digitalSignature is required)")
    try:
        leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        problems.append("the signing certificate has no extended key usage (emailProtection or documentSigning)")
    try:
        leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        problems.append("the signing certificate has no Authority Key Identifier")
    if not leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME):
        problems.append("the signing certificate's subject has no O= (organization)")
    if leaf.not_valid_after_utc <= now:
        problems.append(f"the signing certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}")
    usable = algorithms_for(leaf.public_key())
    if not usable:
        problems.append(f"the signing certificate holds {_key_kind(leaf.public_key())}, which C2PA cannot sign with "
                        "(it takes ECDSA P-256/P-384/P-521, Ed25519 or RSA-PSS)")
    wrong_alg = bool(usable) and alg is not None and alg.lower() not in usable
    if wrong_alg:
        # Caught here, with the setting to change: c2pa-rs would refuse the key with "unsupported algorithm OID".
        problems.append(f"the signing certificate holds {_key_kind(leaf.public_key())}, which signs as "
                        f"{' or '.join(usable)}, but HALLMARK_SIGNER_ALG is {alg}")
    if leaf.not_valid_before_utc > now:
        problems.append(f"the signing certificate is not valid before {leaf.not_valid_before_utc:%Y-%m-%d}")
    for issued, issuer in zip(chain, chain[1:]):
        if issued.issuer != issuer.subject:
            problems.append(f"the chain is out of order: {issued.subject.rfc4514_string()} is not issued by "
                            f"{issuer.subject.rfc4514_string()}")
    if key_pem is not None:
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyMaterialError(f"The private key is not an unencrypted PEM key: {exc}",
                                   hint="Export it as unencrypted PKCS#8 PEM, or keep it in a KMS/HSM and use "
                                   "HALLMARK_SIGNER_CALLBACK.", status=422) from exc
        public = leaf.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
        if key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo) != public:
            problems.append("the private key does not belong to the signing certificate")
    if problems:
        hint = ("C2PA needs an end-entity certificate with digitalSignature, an EKU, an Authority Key Identifier and "
                "O= in its subject, and its matching key.")
        if wrong_alg and len(problems) == 1:
            hint = (f"Set HALLMARK_SIGNER_ALG={usable[0]} (environment or hallmark.toml) for every Hallmark process, "
                    "then import again.")
        raise KeyMaterialError("The signing credential cannot be used for C2PA: " + "; ".join(problems) + ".",
                               hint=hint, status=422)
    return leaf
