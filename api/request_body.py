"""The base of every JSON request body: text that no database can store is refused before anything runs.

JSON may spell characters no database stores: an unpaired surrogate ("\\ud800", which UTF-8 cannot encode, so
neither SQLite nor PostgreSQL takes it) and NUL ("\\u0000", which PostgreSQL's text refuses). Such a prompt or name
passed validation, was gated, and then failed the insert: a 500, with the gate's denial neither stored nor audited.
Checked once here, over the whole body, so that every field of every request is covered, the nested ones too; and
once for every route (`storable_url`, an app-wide dependency) over the path and query values: a NUL in
/v1/generations/ab%00cd or /manifests/urn:c2pa:%00 reached PostgreSQL, a 500."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from pydantic import BaseModel, model_validator

from api.problems import ApiProblem


def unstorable(value: Any, where: str = "body") -> str | None:
    """Where in `value` (JSON data) a string holds a NUL or an unpaired surrogate, and which; None if nowhere."""
    if isinstance(value, str):
        if "\x00" in value:
            return f"{where} holds a NUL character (\\u0000)"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            return f"{where} holds an unpaired surrogate (\\u{ord(value[error.start]):04x})"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            # The key first: the item's place names it, and a message must not carry the bad text itself.
            if found := unstorable(key, f"{where} (a key)") or unstorable(item, f"{where}.{key}"):
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            if found := unstorable(item, f"{where}[{index}]"):
                return found
    return None


class RequestBody(BaseModel):
    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        if (found := unstorable(data)) is not None:
            raise ValueError(f"{found}; send valid Unicode text without it.")
        return data


def storable_url(request: Request) -> None:
    """The same check for the path's and the query's values (a 422 problem)."""
    for name, value in [*request.path_params.items(), *request.query_params.multi_items()]:
        if (found := unstorable(str(value), name)) is not None:
            raise ApiProblem(422, "invalid_input", f"The URL's {found}.",
                             hint="Send the identifier or value as it was given to you.")
