"""The policy version stored with every decision: a hash over the operator-editable policy files, so an auditor can
tell exactly which rules decided."""

from __future__ import annotations

import hashlib
from pathlib import Path


def policy_version(policy_dir: Path) -> str:
    digest = hashlib.sha256()
    if policy_dir.is_dir():
        for file in sorted(p for p in policy_dir.rglob("*") if p.is_file() and p.suffix in {
                ".cedar", ".cedarschema", ".json", ".txt", ".toml", ".yaml", ".yml"}):
            digest.update(str(file.relative_to(policy_dir)).encode() + b"\0" + file.read_bytes() + b"\0")
    return "sha256:" + digest.hexdigest()[:16]
