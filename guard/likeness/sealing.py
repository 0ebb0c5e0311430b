"""Face templates are biometric data: sealed with AES-256-GCM before they reach the database.

The AES key is derived (HKDF-SHA256) from the face key in the data dir (`keys/face.key`, made by `hallmark init`)
or HALLMARK_FACE_KEY. Each template gets a fresh 96-bit nonce, and the subject it belongs to is bound in as
associated data, so a ciphertext moved onto another cameo's row fails to open instead of silently matching as that
cameo. The key id stored beside each row says which key sealed it."""

from __future__ import annotations

import hashlib
import os

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from guard.errors import KeyMaterialError
from guard.likeness.analysis import EMBEDDING_DIM

FORMAT = b"\x01"  # layout version: 0x01 ‖ nonce (12) ‖ ciphertext ‖ tag (16)
_INFO = b"hallmark face templates v1"


class TemplateSealer:
    def __init__(self, key_material: bytes) -> None:
        if len(key_material) < 16:
            raise KeyMaterialError("The face template key is shorter than 128 bits.",
                                   hint="Set HALLMARK_FACE_KEY to a longer secret, or let `hallmark init` make one.")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(key_material)
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"key-id\0" + key).hexdigest()[:16]

    def seal(self, vector: np.ndarray, subject: str) -> bytes:
        data = np.asarray(vector, dtype="<f4").reshape(EMBEDDING_DIM).tobytes()
        nonce = os.urandom(12)
        return FORMAT + nonce + self._aead.encrypt(nonce, data, _aad(subject))

    def open(self, sealed: bytes, subject: str, key_id: str | None = None) -> np.ndarray:
        if key_id is not None and key_id != self.key_id:
            raise KeyMaterialError(
                f"A face template was sealed with another face key (key id {key_id}, this key is {self.key_id}).",
                hint="Restore the data dir's keys/face.key (or HALLMARK_FACE_KEY) that enrolled the cameos.")
        if len(sealed) < 1 + 12 + 16 or sealed[:1] != FORMAT:
            raise KeyMaterialError("A sealed face template is malformed.")
        try:
            data = self._aead.decrypt(sealed[1:13], sealed[13:], _aad(subject))
        except InvalidTag as exc:
            raise KeyMaterialError("A sealed face template does not open with this key and subject "
                                   "(tampered, moved to another subject, or another key).") from exc
        return np.frombuffer(data, dtype="<f4").astype(np.float32)


def _aad(subject: str) -> bytes:
    return b"hallmark-face-template\0" + subject.encode()
