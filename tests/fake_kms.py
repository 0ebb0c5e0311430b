"""A stand-in for a KMS/HSM signing client, for the callback-signer tests: the private key lives only in this
process's memory, derived from a secret in the environment (as a real client would hold a key handle and
credentials), and `sign` returns a DER ECDSA signature the way cloud KMSs do. Hallmark sees only `sign`."""

from __future__ import annotations

import hashlib
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec


def _key() -> ec.EllipticCurvePrivateKey:
    secret = os.environ.get("HALLMARK_TEST_KMS_SECRET", "")
    if not secret:
        raise RuntimeError("the fake KMS has no key (HALLMARK_TEST_KMS_SECRET is unset)")
    scalar = int.from_bytes(hashlib.sha256(secret.encode()).digest(), "big") % (2**255)
    return ec.derive_private_key(scalar or 1, ec.SECP256R1())


def public_key() -> ec.EllipticCurvePublicKey:
    return _key().public_key()


def sign(data: bytes) -> bytes:
    return _key().sign(data, ec.ECDSA(hashes.SHA256()))
