"""Reading and validating a file's C2PA manifest against a trust store.

The trust store (our own roots plus any anchors the operator adds) is what turns a cryptographically `Valid`
manifest into a `Trusted` one; a signer outside it stays `Valid` with `signingCredential.untrusted`."""

from __future__ import annotations

import io
import json
import re
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import c2pa

from guard.provenance.manifest import HALLMARK_ASSERTION, SOFT_BINDING, TRAINING_MINING

# Failure codes that say "the bytes are not the ones that were signed" (the hard binding). After a re-encode they
# are expected for a manifest recovered through the soft binding; on a file that carries its manifest they mean
# the video was altered. Note `assertion.hashedURI.mismatch` is not one of them: it means an assertion changed.
HARD_BINDING_FAILURES = frozenset({"assertion.bmffHash.mismatch", "assertion.dataHash.mismatch",
                                   "assertion.boxesHash.mismatch", "assertion.collectionHash.mismatch"})
EXPIRED_FAILURES = frozenset({"signingCredential.expired", "claimSignature.outsideValidity"})
UNTRUSTED = "signingCredential.untrusted"

# c2pa-rs 0.91 hashes a flat (non-Merkle) binding through two read buffers of up to 256 MiB each, so validating a
# large file signed that way costs up to 512 MiB while it runs (our own clips use Merkle leaves and cost little).
# One such validation at a time per process keeps concurrent uploads from multiplying that.
LARGE_FILE = 64 * 1024 * 1024
_large_validation = threading.BoundedSemaphore(1)


def _one_large_at_a_time(path: Path | None):  # type: ignore[no-untyped-def]
    try:
        large = path is not None and path.stat().st_size > LARGE_FILE
    except OSError:
        large = False
    return _large_validation if large else nullcontext()

C2PA_FORMATS = "MP4, MOV, M4V, AVI, GIF, PNG and JPEG"  # the files whose manifests are read, as told to people
# c2pa-rs reads these containers for video; others (WebM, MKV) cannot carry a manifest it understands.
C2PA_VIDEO_SUFFIXES = {".mp4": "video/mp4", ".mov": "video/quicktime", ".m4v": "video/x-m4v",
                       ".avi": "video/msvideo"}
# ... and these pictures, which FFmpeg also opens (an animated GIF is a clip; a still is refused later as one).
C2PA_IMAGE_SUFFIXES = {".gif": "image/gif", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
C2PA_IMAGE_DEMUXERS = {"gif": "image/gif", "png_pipe": "image/png", "jpeg_pipe": "image/jpeg"}


def c2pa_mime_for_container(ffmpeg_format: str) -> str | None:
    """The MIME type c2pa-rs should read a file as, from what FFmpeg found inside it (not from its name)."""
    names = set(ffmpeg_format.split(","))
    if names & {"mov", "mp4", "m4a", "3gp"}:
        return "video/mp4"  # c2pa-rs tells MP4 from MOV by the bytes; the ISO BMFF reader handles both
    if "avi" in names:
        return "video/msvideo"
    return next((mime for name, mime in C2PA_IMAGE_DEMUXERS.items() if name in names), None)


@dataclass
class C2paReport:
    present: bool
    state: str  # Trusted | Valid | Invalid | absent
    failure_codes: list[str] = field(default_factory=list)
    success_codes: list[str] = field(default_factory=list)
    manifest_label: str | None = None
    signer: str | None = None
    issuer: str | None = None
    signing_time: str | None = None  # from an RFC 3161 timestamp; None when the manifest has none
    signature_alg: str | None = None
    cert_serial_number: str | None = None
    claim_generator: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    soft_bindings: list[dict[str, Any]] = field(default_factory=list)
    ingredients: list[dict[str, Any]] = field(default_factory=list)
    assertions: dict[str, Any] = field(default_factory=dict)  # label -> data, for every assertion
    note: str | None = None

    @property
    def hallmark(self) -> dict[str, Any] | None:
        """The Hallmark gate assertion, when the manifest has one that is an object (whoever signs a manifest
        decides what its assertions hold: any other shape says nothing this service reads)."""
        data = self.assertions.get(HALLMARK_ASSERTION)
        return data if isinstance(data, dict) else None

    @property
    def generator(self) -> dict[str, Any] | None:
        """The softwareAgent of the `c2pa.created` action (the model that made the clip)."""
        for action in self.actions:
            if action.get("action") == "c2pa.created":
                agent = action.get("softwareAgent")  # an object in actions v2; a plain name in v1
                return agent if isinstance(agent, dict) else {"name": agent} if isinstance(agent, str) else None
        return None

    @property
    def problem(self) -> str | None:
        """Why an Invalid manifest is invalid, in one word the verdict can use: hard_binding (the video changed),
        expired (certificate no longer valid, no timestamp), unreadable, or signature (anything else)."""
        if self.state != "Invalid":
            return None
        codes = set(self.failure_codes)
        if codes & HARD_BINDING_FAILURES:
            return "hard_binding"
        if codes & EXPIRED_FAILURES:
            return "expired"
        if any(code.startswith("c2pa.error.") for code in codes):
            return "unreadable"
        return "signature"

    @property
    def signature_state(self) -> str:
        """The manifest's own state with hard-binding failures set aside: what a manifest recovered through its
        soft binding is judged by (its claim signature and signer, not bytes it was never bound to)."""
        if self.state != "Invalid" or not self.failure_codes:
            return self.state
        remaining = set(self.failure_codes) - HARD_BINDING_FAILURES
        if "claimSignature.validated" not in self.success_codes or remaining - {UNTRUSTED}:
            return "Invalid"
        if UNTRUSTED in remaining or "signingCredential.trusted" not in self.success_codes:
            return "Valid"
        return "Trusted"

    def as_dict(self) -> dict[str, Any]:
        return {
            "present": self.present, "state": self.state, "failure_codes": self.failure_codes,
            "manifest_label": self.manifest_label, "signer": self.signer, "issuer": self.issuer,
            "signing_time": self.signing_time, "signature_alg": self.signature_alg,
            "generator": self.generator, "claim_generator": self.claim_generator, "actions": self.actions,
            "soft_bindings": self.soft_bindings, "ingredients": self.ingredients,
            "training_mining": self.assertions.get(TRAINING_MINING), "hallmark": self.hallmark,
            "note": self.note,
        }


def trust_context(anchor_pems: list[bytes]) -> c2pa.Context:
    """A c2pa context that verifies signers against exactly these roots, and never goes to the network.

    c2pa-rs fetches by default a "remote manifest" that a file names (dcterms:provenance in its XMP) when the file
    carries none: reading an upload would make the server request a URL the uploader chose (and the error would
    tell an open port from a closed one). Such a file is reported as referencing one (`remote_manifest_note`)."""
    settings: dict[str, Any] = {"verify": {"verify_trust": True, "remote_manifest_fetch": False,
                                           "ocsp_fetch": False}}
    if anchor_pems:
        settings["trust"] = {"trust_anchors": b"\n".join(anchor_pems).decode()}
    return c2pa.Context.from_dict(settings)


def read_c2pa(path: Path, context: c2pa.Context, mime: str | None = None) -> C2paReport:
    """The C2PA report for a video file; never raises for content problems (they are the report).

    `mime` should come from the probed container (`c2pa_mime_for_container`); by default the suffix decides."""
    suffix = path.suffix.lower()
    mime = mime or C2PA_VIDEO_SUFFIXES.get(suffix) or C2PA_IMAGE_SUFFIXES.get(suffix)
    if mime is None:
        return C2paReport(present=False, state="absent",
                          note=f"This container cannot carry a C2PA manifest that c2pa-rs reads ({C2PA_FORMATS} "
                          "can); verified by watermark only.")
    try:
        with _one_large_at_a_time(path), path.open("rb") as stream:
            reader = c2pa.Reader.try_create(mime, stream, None, context)
            if reader is None:
                return C2paReport(present=False, state="absent")
            with reader:
                store = json.loads(reader.json())
                state = reader.get_validation_state() or "Invalid"
    except c2pa.C2paError as exc:
        remote = remote_manifest_note(exc)
        if remote is not None:  # the file carries no manifest, only a link to one, which is not followed
            return C2paReport(present=False, state="absent", note=remote)
        # A manifest that is there but cannot be parsed is not "absent": someone's credentials are broken.
        return C2paReport(present=True, state="Invalid", failure_codes=[_error_code(exc)],
                          note=f"The manifest could not be read: {exc}")
    return report_from_store(store, state)


def validate_manifest_bytes(manifest: bytes, context: c2pa.Context, *, asset: Path | None = None,
                            mime: str | None = None) -> C2paReport:
    """Validate a stored manifest store (e.g. one recovered through its soft binding) as a sidecar of `asset`,
    or on its own when there is no asset c2pa-rs can read (then the hard binding cannot match, by design; judge
    it by `signature_state`)."""
    try:
        if asset is not None and mime is not None:
            with _one_large_at_a_time(asset), asset.open("rb") as stream, \
                    c2pa.Reader(mime, stream, manifest, context) as reader:
                store, state = json.loads(reader.json()), reader.get_validation_state() or "Invalid"
        else:
            with c2pa.Reader("application/c2pa", io.BytesIO(manifest), None, context) as reader:
                store, state = json.loads(reader.json()), reader.get_validation_state() or "Invalid"
    except c2pa.C2paError as exc:
        return C2paReport(present=True, state="Invalid", failure_codes=[_error_code(exc)],
                          note=f"The stored manifest could not be read: {exc}")
    return report_from_store(store, state)


def report_from_store(store: dict[str, Any], state: str) -> C2paReport:
    label = store.get("active_manifest")
    manifest = store.get("manifests", {}).get(label, {}) if label else {}
    results = store.get("validation_results", {}).get("activeManifest", {})
    failures = [item.get("code", "") for item in results.get("failure", [])]
    successes = [item.get("code", "") for item in results.get("success", [])]
    if not failures and state == "Invalid":
        failures = [item.get("code", "") for item in store.get("validation_status", [])]
    assertions: dict[str, Any] = {}
    actions: list[dict[str, Any]] = []
    soft_bindings: list[dict[str, Any]] = []
    for assertion in manifest.get("assertions", []):
        data = assertion.get("data")
        assertions[assertion.get("label", "")] = data
        if assertion.get("label", "").startswith("c2pa.actions") and isinstance(data, dict):
            listed = data.get("actions")
            actions.extend(a for a in (listed if isinstance(listed, list) else []) if isinstance(a, dict))
        if assertion.get("label", "").startswith(SOFT_BINDING) and isinstance(data, dict):
            soft_bindings.append(data)
    signature = manifest.get("signature_info", {})
    return C2paReport(
        present=True,
        state=state,
        failure_codes=list(dict.fromkeys(code for code in failures if code)),
        success_codes=list(dict.fromkeys(code for code in successes if code)),
        manifest_label=label,
        signer=signature.get("common_name"),
        issuer=signature.get("issuer"),
        signing_time=signature.get("time"),
        signature_alg=signature.get("alg"),
        cert_serial_number=signature.get("cert_serial_number"),
        claim_generator=manifest.get("claim_generator_info", []),
        actions=actions,
        soft_bindings=soft_bindings,
        ingredients=manifest.get("ingredients", []),
        assertions=assertions,
    )


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s)]+")


def remote_manifest_note(exc: c2pa.C2paError) -> str | None:
    """What to say of a file whose manifest is remote (c2pa-rs: "Remote: must fetch remote manifests from url …"),
    or None for any other error. Only the host is named: c2pa-rs's own words are not passed on."""
    text = str(exc)
    if not (isinstance(exc, c2pa.C2paError.RemoteManifest) or text.startswith("Remote")):
        return None
    found = _URL.search(text)
    try:
        host = urlsplit(found.group()).hostname if found else None
    except ValueError:
        host = None
    where = f" at {host[:100]}" if host else ""
    return (f"The file references a remote manifest{where} (not fetched: only a manifest embedded in the file "
            "is read); verified by watermark only.")


def _error_code(exc: c2pa.C2paError) -> str:
    name = type(exc).__name__.lstrip("_").removeprefix("C2pa")
    return f"c2pa.error.{name or 'Other'}"
