"""Errors that tell a person what went wrong and what to do about it.

Every error carries a stable machine `code` (used as the problem type in HTTP answers), a `message` saying what
happened, a `hint` saying what to do, and the HTTP `status` the API answers with. `diagnostics()` renders the
message and hint for a terminal. The API and the CLI turn these into problem bodies and exit codes; nothing below
`api/` prints or exits.
"""

from __future__ import annotations


class HallmarkError(Exception):
    code: str = "error"
    status: int = 500

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def diagnostics(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class InvalidInput(HallmarkError):
    """The caller sent something we cannot use (bad parameter, unreadable file)."""

    code = "invalid_input"
    status = 422


class UnsupportedMedia(HallmarkError):
    code = "unsupported_media"
    status = 415


class PayloadTooLarge(HallmarkError):
    code = "payload_too_large"
    status = 413


class MediaError(InvalidInput):
    """A file that claims to be video but cannot be decoded (empty, truncated, not a video)."""

    code = "unreadable_media"


class MarkingError(HallmarkError):
    """Marking failed; the clip is not released (fail closed)."""

    code = "marking_failed"


class SigningError(HallmarkError):
    """C2PA signing failed; the clip is not released (fail closed)."""

    code = "signing_failed"


class KeyMaterialError(HallmarkError):
    """Keys or certificates are missing or unusable."""

    code = "key_material"
    hint_default = "Run `hallmark init` to create the data dir's keys, or check file permissions."
