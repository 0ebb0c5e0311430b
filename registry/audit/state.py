"""The last checkpoint the log signed, kept outside the database (a file next to the log key).

Anyone who can write to the database can rewrite entries, rebuild the tree nodes and head, and delete the stored
checkpoints; the next checkpoint would then sign the forged root. The service refuses to sign a tree that does not
extend the last one it signed, and this file is how it remembers that one when the database no longer does. It
holds the signed note itself, so it is checked with the log's public key like any checkpoint.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from registry.audit.checkpoint import Checkpoint, CheckpointError, open_checkpoint


class StateFileError(ValueError):
    """The state file exists but cannot be read or is not a checkpoint signed by this log's key."""


def read_signed_state(path: Path, public_key: bytes, origin: str) -> Checkpoint | None:
    """The checkpoint in the state file, verified with the log's key; None when there is no file yet."""
    try:
        note = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StateFileError(f"{path} cannot be read ({exc})") from exc
    try:
        return open_checkpoint(note, public_key, origin=origin)
    except CheckpointError as exc:
        raise StateFileError(f"{path} is not a checkpoint signed by this log's key ({exc})") from exc


def write_signed_state(path: Path, note: str, size: int, public_key: bytes, origin: str) -> None:
    """Remember `note` (a checkpoint of `size` entries) unless the file already holds a larger one: two processes
    signing at once (the server's checkpoint thread and `hallmark audit checkpoint`) must not move it backwards.
    The read, the comparison and the replacement happen under an exclusive lock on a file beside it, and the new
    state is written to a temporary file and renamed, so a crash leaves the old state or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.with_name(path.name + ".lock")):
        try:
            current = read_signed_state(path, public_key, origin)
        except StateFileError:
            current = None  # replaced by a checkpoint that does verify (the caller checked consistency with it first)
        if current is not None and current.size > size:
            return
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(note)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


@contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock (flock) held while the block runs, released when the file is closed."""
    with open(lock_path, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        yield
