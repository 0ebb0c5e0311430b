"""Receiving an uploaded video straight to a temp file, whatever its size, in constant memory.

A multipart body is parsed as it streams (python-multipart's push parser) and the `file` part's bytes go
directly to the temp file; a raw body (a video Content-Type) is written as it arrives. The size limit is checked
on the bytes actually received, so a client that lies about Content-Length, or sends none (chunked), is cut off at
the limit too. Nothing is spooled in memory or copied twice."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fastapi import Request
from python_multipart.multipart import MultipartParser, parse_options_header

from api.problems import ApiProblem
from guard.errors import HallmarkError

SUFFIX_FOR_TYPE = {"video/mp4": ".mp4", "video/quicktime": ".mov", "video/x-m4v": ".m4v", "video/x-msvideo": ".avi",
                   "video/avi": ".avi", "video/msvideo": ".avi", "video/webm": ".webm", "video/x-matroska": ".mkv",
                   "image/gif": ".gif", "image/png": ".png", "image/jpeg": ".jpg"}
# The only suffixes an upload is saved under. The client's filename is not trusted for it: FFmpeg picks some
# demuxers by the name, and a ".m3u8" one opens every local path or URL its playlist lists (a long name also made
# the rename fail with a 500). What is read is decided by the bytes (guard.media allows plain containers only).
UPLOAD_SUFFIXES = frozenset(SUFFIX_FOR_TYPE.values())
MULTIPART_ALLOWANCE = 64 * 1024  # headers and boundaries around the file part


@dataclass
class Upload:
    path: Path
    size: int
    content_type: str  # what the client said the file is ("" when it did not say)
    filename: str | None


def too_large(limit: int) -> ApiProblem:
    return ApiProblem(413, "payload_too_large", f"The upload is larger than the limit of {limit} bytes.",
                      hint="Send a shorter excerpt, or ask the operator to raise HALLMARK_MAX_UPLOAD_BYTES.")


@contextmanager
def temp_upload_path(directory: Path) -> Iterator[Path]:
    """A fresh temp file name in `directory`, removed afterwards whatever happens. An error about the file names it
    "the upload", not by the server's temp name (which means nothing to the client and shows a server path)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="upload-", dir=directory)
    os.close(fd)
    path = Path(name)
    try:
        yield path
    except HallmarkError as exc:
        exc.message = _without_temp_name(exc.message, path)
        raise
    finally:
        path.unlink(missing_ok=True)
        for sibling in path.parent.glob(path.name + ".*"):
            sibling.unlink(missing_ok=True)


def _without_temp_name(message: str, path: Path) -> str:
    """`message` with the temp file's path or name (and any suffix it was given) said as "the upload"."""
    pattern = re.compile(f"(?:{re.escape(str(path.parent))}/)?{re.escape(path.name)}(?:\\.[A-Za-z0-9]+)?")
    message = pattern.sub("the upload", message)
    return message[:1].upper() + message[1:]


async def receive_upload(request: Request, target: Path, limit: int, *, field: str = "file") -> Upload:
    """Write the uploaded video into `target` (then renamed with a suffix that says its type). Raises ApiProblem
    413 beyond `limit` bytes, 422 for an empty upload or a multipart body without `field`."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MULTIPART_ALLOWANCE:
        raise too_large(limit)
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    mime = content_type.decode("latin-1").lower()
    with target.open("wb") as out:
        if mime == "multipart/form-data":
            boundary = params.get(b"boundary")
            if not boundary:
                raise ApiProblem(422, "invalid_input", "The multipart body has no boundary.",
                                 hint=f"curl -F {field}=@clip.mp4 ...")
            sink = _FilePartSink(out, field, limit)
            parser = MultipartParser(boundary, sink.callbacks())
            received = 0
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit + MULTIPART_ALLOWANCE:
                    raise too_large(limit)
                parser.write(chunk)
            parser.finalize()
            if not sink.found:
                raise ApiProblem(422, "invalid_input", f"The multipart body has no file field named {field!r}.",
                                 hint=f"curl -F {field}=@clip.mp4 ...")
            size, declared_type, filename = sink.size, sink.content_type, sink.filename
        else:
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                out.write(chunk)
            declared_type, filename = mime, None
    if size == 0:
        raise ApiProblem(422, "unreadable_media", "The upload is empty (0 bytes).", hint="Send the whole video file.")
    named = target.with_name(target.name + upload_suffix(filename, declared_type))
    target.rename(named)
    return Upload(named, size, declared_type, filename)


def upload_suffix(filename: str | None, content_type: str) -> str:
    """The suffix to save an upload under: the client's, if it is one of UPLOAD_SUFFIXES; else the declared type's;
    else ".bin"."""
    client_suffix = Path(filename).suffix.lower() if filename else ""
    if client_suffix in UPLOAD_SUFFIXES:
        return client_suffix
    return SUFFIX_FOR_TYPE.get(content_type, ".bin")


class _FilePartSink:
    """python-multipart callbacks that write the bytes of one named file part to `out`, counting them."""

    def __init__(self, out: BinaryIO, field: str, limit: int) -> None:
        self.out, self.field, self.limit = out, field, limit
        self.found = False
        self.size = 0
        self.content_type = ""
        self.filename: str | None = None
        self._headers: dict[bytes, bytes] = {}
        self._name, self._value = b"", b""
        self._writing = False

    def callbacks(self) -> dict:  # type: ignore[type-arg]
        return {"on_part_begin": self._begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done, "on_part_data": self._data, "on_part_end": self._end}

    def _begin(self) -> None:
        self._headers, self._writing = {}, False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._name.strip().lower()] = self._value.strip()
        self._name, self._value = b"", b""

    def _headers_done(self) -> None:
        _, disposition = parse_options_header(self._headers.get(b"content-disposition", b""))
        if disposition.get(b"name", b"").decode("utf-8", "replace") == self.field and not self.found:
            self.found, self._writing = True, True
            raw_name = disposition.get(b"filename")
            self.filename = raw_name.decode("utf-8", "replace") if raw_name else None
            self.content_type = parse_options_header(self._headers.get(b"content-type", b""))[0].decode(
                "latin-1").lower()

    def _data(self, data: bytes, start: int, end: int) -> None:
        if not self._writing:
            return
        self.size += end - start
        if self.size > self.limit:
            raise too_large(self.limit)
        self.out.write(data[start:end])

    def _end(self) -> None:
        self._writing = False
