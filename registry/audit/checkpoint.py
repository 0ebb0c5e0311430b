"""Checkpoints in the C2SP tlog-checkpoint format, signed as C2SP signed notes with Ed25519.

    example.com/hallmark-audit          <- origin (also the key name in the signature line)
    1234                                 <- tree size, decimal
    Y2hlY2twb2ludCByb290IGhhc2guLi4=     <- base64 RFC 6962 root hash
                                         <- blank line: the signed text ends before it
    — example.com/hallmark-audit <base64(4-byte key ID || 64-byte Ed25519 signature)>

Key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4] (signed-note, signature type 0x01). The
verifier key string `name+hex(key ID)+base64(0x01 || public key)` is the one Go's sumdb/note reads.
Specs: https://c2sp.org/tlog-checkpoint, https://c2sp.org/signed-note.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from registry.audit.merkle import HASH_SIZE

ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
MAX_SIGNATURES = 100
_NAME = re.compile(r"^[^\s+]+$")
_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)$")


class CheckpointError(ValueError):
    """A checkpoint or signed note that is malformed, or not signed by the trusted key."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode(), *self.extensions]
        return "\n".join(lines) + "\n"


def check_name(name: str) -> str:
    if not name or not _NAME.match(name):
        raise CheckpointError(f"{name!r} is not a valid log origin / key name (non-empty, no spaces, no '+').")
    return name


def parse_checkpoint_text(text: str) -> Checkpoint:
    if not text.endswith("\n"):
        raise CheckpointError("a checkpoint's text ends with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise CheckpointError("a checkpoint has an origin, a size and a root hash, each on its own line")
    origin, size, root = lines[0], lines[1], lines[2]
    if not _DECIMAL.match(size):
        raise CheckpointError(f"the checkpoint's size {size!r} is not a decimal number")
    try:
        root_hash = base64.b64decode(root, validate=True)
    except binascii.Error as exc:
        raise CheckpointError("the checkpoint's root hash is not base64") from exc
    if len(root_hash) != HASH_SIZE:
        raise CheckpointError(f"the checkpoint's root hash has {len(root_hash)} bytes, not {HASH_SIZE}")
    return Checkpoint(origin=origin, size=int(size), root_hash=root_hash, extensions=tuple(lines[3:]))


def public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def verifier_key(name: str, public_key: bytes) -> str:
    """The `name+hex(id)+base64(type || key)` verifier key string of the signed-note ecosystem."""
    encoded = base64.b64encode(bytes([ED25519]) + public_key).decode()
    return f"{check_name(name)}+{key_id(name, public_key).hex()}+{encoded}"


def parse_verifier_key(text: str) -> tuple[str, bytes]:
    """(name, 32-byte public key) of a `name+hex(id)+base64(0x01 || key)` verifier key string, its key ID checked."""
    parts = text.strip().split("+", 2)  # the base64 key may itself hold "+" (a name may not: check_name)
    if len(parts) != 3:
        raise CheckpointError("a verifier key is name+keyid+base64key")
    name, hex_id, encoded = parts
    try:
        blob = base64.b64decode(encoded, validate=True)
        wanted = bytes.fromhex(hex_id)
    except (binascii.Error, ValueError) as exc:
        raise CheckpointError("the verifier key's key ID is not hex or its key is not base64") from exc
    if len(blob) != 33 or blob[0] != ED25519:
        raise CheckpointError("the verifier key is not an Ed25519 (type 0x01) key")
    if key_id(check_name(name), blob[1:]) != wanted:
        raise CheckpointError("the verifier key's key ID does not match its name and key")
    return name, blob[1:]


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    check_name(name)
    if not text.endswith("\n") or any(ord(c) < 0x20 and c != "\n" for c in text):
        raise CheckpointError("a note's text ends with a newline and has no control characters")
    signature = private_key.sign(text.encode())
    blob = key_id(name, public_key_bytes(private_key)) + signature
    return f"{text}\n{SIGNATURE_PREFIX}{name} {base64.b64encode(blob).decode()}\n"


def sign_checkpoint(checkpoint: Checkpoint, private_key: Ed25519PrivateKey) -> str:
    """The signed note of a checkpoint; the key name is the origin, as tlog-checkpoint recommends."""
    check_name(checkpoint.origin)
    return sign_note(checkpoint.text(), checkpoint.origin, private_key)


def open_note(note: str, name: str, public_key: bytes) -> str:
    """The note's text, if a signature by (name, public_key) is on it and verifies; else CheckpointError.
    Signatures by other keys are ignored, as the spec requires (they may be witnesses' cosignatures)."""
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise CheckpointError("the note contains control characters")
    if not note.endswith("\n") or "\n\n" not in note:
        raise CheckpointError("the note has no signature block (a blank line, then signature lines)")
    split = note.rindex("\n\n")
    text, signatures = note[:split + 1], note[split + 2:].splitlines()
    if not signatures or len(signatures) > MAX_SIGNATURES:
        raise CheckpointError("the note has no (or too many) signature lines")
    try:
        verifier = Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError as exc:
        raise CheckpointError("the public key is not a 32-byte Ed25519 key") from exc
    wanted = key_id(name, public_key)
    for line in signatures:
        if not line.startswith(SIGNATURE_PREFIX) or line.count(" ") != 2:
            raise CheckpointError(f"malformed signature line {line!r}")
        signer, encoded = line[len(SIGNATURE_PREFIX):].split(" ")
        try:
            blob = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise CheckpointError(f"the signature of {signer} is not base64") from exc
        if len(blob) < 5:
            raise CheckpointError(f"the signature of {signer} is too short")
        if signer != name or blob[:4] != wanted:
            continue  # another key's signature
        try:
            verifier.verify(blob[4:], text.encode())
        except InvalidSignature as exc:
            raise CheckpointError(f"the signature by {name} (key ID {wanted.hex()}) does not verify: the "
                                  "checkpoint was changed after it was signed") from exc
        return text
    raise CheckpointError(f"the note carries no signature by {name} with key ID {wanted.hex()} "
                          "(signed by another key, or for another log)")


def open_checkpoint(note: str, public_key: bytes, *, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint with the log's public key and parse it. With `origin`, the checkpoint must be
    that log's; without, the origin line names the key (as our logs sign it)."""
    first_line = note.split("\n", 1)[0]
    name = origin if origin is not None else first_line
    checkpoint = parse_checkpoint_text(open_note(note, check_name(name), public_key))
    if checkpoint.origin != name:
        raise CheckpointError(f"the checkpoint is for log {checkpoint.origin!r}, not {name!r}")
    return checkpoint


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"the log signing key is not a readable PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError("the log signing key is not an Ed25519 key")
    return key
