"""The leaf: the exact bytes the Merkle tree commits to for one event, and the commitments to its personal data.

A leaf is the RFC 8785 (JSON Canonicalization Scheme) encoding of

    {"v": 1, "index": N, "at": "2026-01-02T03:04:05.678901Z", "kind": "generation.requested",
     "actor": "<account id>" | null, "subject": "<id>" | null, "data": {...},
     "personal": {"prompt": "<hex SHA-256 commitment>", ...}}

Personal data (prompt text, names, e-mail addresses) never enters the leaf. Each personal field is committed to
as SHA-256("hallmark/audit/personal/v1" || 0x00 || salt || JCS(value)) with a fresh 32-byte random salt; the value
and its salt are stored beside the log. Anyone holding both can check them against the leaf; erasing them (the
salt too, so the commitment can no longer be tested against guesses) leaves the leaf, and every proof, unchanged.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import datetime, timezone
from typing import Any

import rfc8785

LEAF_VERSION = 1
SALT_BYTES = 32
COMMITMENT_DOMAIN = b"hallmark/audit/personal/v1\x00"


class LeafError(ValueError):
    """A leaf, or a value meant for one, is not what the format requires."""


MAX_SAFE_INTEGER = 2**53 - 1


def is_simple(value: Any) -> bool:
    """True for JSON built only of strings, booleans, null, integers within +-(2**53 - 1), lists, and objects
    with ASCII keys: the values on which the standard library's sorted, compact JSON *is* RFC 8785 (same string
    escapes; ASCII keys sort alike by code point and by UTF-16 unit; safe integers print alike)."""
    if value is None or isinstance(value, (str, bool)):
        return True
    if isinstance(value, int):
        return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
    if isinstance(value, dict):
        return all(isinstance(key, str) and key.isascii() and is_simple(item) for key, item in value.items())
    if isinstance(value, list):
        return all(is_simple(item) for item in value)
    return False


def canonical(value: Any) -> bytes:
    """RFC 8785 canonical JSON. Refuses what JSON cannot carry exactly (NaN, integers beyond 2**53).

    Simple values (see is_simple; nearly every event) take the C-accelerated `json` path, about five times
    faster; everything else (floats, non-ASCII keys) goes through the `rfc8785` library, the reference the fast
    path is tested against."""
    if is_simple(value):
        try:
            return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        except UnicodeEncodeError:
            pass  # a lone surrogate: let the reference implementation decide
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise LeafError(f"not representable as canonical JSON: {exc}") from exc


def format_time(at: datetime) -> str:
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_salt() -> bytes:
    return secrets.token_bytes(SALT_BYTES)


def commitment(salt: bytes, value: Any) -> str:
    if len(salt) != SALT_BYTES:
        raise LeafError(f"a personal-data salt is {SALT_BYTES} bytes, not {len(salt)}")
    return hashlib.sha256(COMMITMENT_DOMAIN + salt + canonical(value)).hexdigest()


def leaf_parts(*, at: datetime, kind: str, actor_id: str | None, subject: str | None, data: dict[str, Any],
               commitments: dict[str, str]) -> tuple[bytes, bytes]:
    """The canonical leaf without its index, as the bytes before and after the index's digits. JCS sorts the
    members (actor, at, data | index | kind, personal, subject, v), so the leaf is exactly head + digits + tail:
    the expensive canonicalization is done when the event is appended, and sequencing only splices the index."""
    before = canonical({"actor": actor_id, "at": format_time(at), "data": data})
    after = canonical({"kind": kind, "personal": commitments, "subject": subject, "v": LEAF_VERSION})
    return before[:-1] + b',"index":', b"," + after[1:]


def assemble_leaf(head: bytes, index: int, tail: bytes) -> bytes:
    return head + str(index).encode() + tail


def encode_leaf(*, index: int, at: datetime, kind: str, actor_id: str | None, subject: str | None,
                data: dict[str, Any], commitments: dict[str, str]) -> bytes:
    head, tail = leaf_parts(at=at, kind=kind, actor_id=actor_id, subject=subject, data=data,
                            commitments=commitments)
    return assemble_leaf(head, index, tail)


_FIELDS = {"v": int, "index": int, "at": str, "kind": str, "actor": (str, type(None)),
           "subject": (str, type(None)), "data": dict, "personal": dict}


def decode_leaf(leaf: bytes) -> dict[str, Any]:
    """Parse a leaf and check it is exactly the canonical encoding of a version-1 event."""
    try:
        event = json.loads(leaf.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LeafError(f"the leaf is not UTF-8 JSON ({exc})") from exc
    if not isinstance(event, dict) or set(event) != set(_FIELDS):
        raise LeafError("the leaf does not have the fields of an audit event")
    for name, kind in _FIELDS.items():
        if not isinstance(event[name], kind) or (kind is int and isinstance(event[name], bool)):
            raise LeafError(f"the leaf's {name!r} has the wrong type")
    if event["v"] != LEAF_VERSION:
        raise LeafError(f"unknown leaf version {event['v']}")
    if canonical(event) != leaf:
        raise LeafError("the leaf is not in RFC 8785 canonical form")
    return event
