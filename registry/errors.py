"""Registry errors. Same shape as `guard.errors.HallmarkError` (code, message, hint, status) so the API renders both
alike; `registry` imports no other package of the project, so it keeps its own small base."""

from __future__ import annotations


class RegistryError(Exception):
    code: str = "registry_error"
    status: int = 500

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class NotFound(RegistryError):
    code = "not_found"
    status = 404


class Conflict(RegistryError):
    code = "conflict"
    status = 409


class DatabaseUnavailable(RegistryError):
    code = "database_unavailable"
    status = 503
