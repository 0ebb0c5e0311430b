"""Verifying where a clip came from: C2PA read + validate, invisible watermark detection, the generation the
watermark leads to, the original manifest recovered through it when the file's own is missing or broken (C2PA
"durable content credentials"), and one sentence that sums it up."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import c2pa

from guard.errors import InvalidInput
from guard.marks.apply import detect_frames
from guard.marks.invisible import Detection, WatermarkMethod
from guard.media import VideoInfo, probe, read_frames
from guard.provenance.manifest import payload_from_soft_binding_value
from guard.provenance.reading import C2paReport, c2pa_mime_for_container, read_c2pa, validate_manifest_bytes


@dataclass(frozen=True)
class Resolution:
    """What a watermark payload leads to in the store."""

    record: dict[str, Any]  # the generation's fields this viewer may see
    manifest: bytes | None  # the manifest store signed into the released clip
    manifest_label: str | None
    original: Path | None = None  # the released file, when it is still in the output store


Resolver = Callable[[bytes], Resolution | None]  # watermark payload -> what it leads to, or None


@dataclass
class RecoveredManifest:
    """The stored manifest found through the soft binding, validated again now.

    `state` judges the manifest itself (claim signature, signer, trust) with the hard binding set aside, since a
    re-encoded file cannot match bytes it no longer has; `hard_binding` says what the hard binding does match."""

    manifest_label: str | None
    state: str  # Trusted | Valid | Invalid
    hard_binding: str  # matches_this_file | matches_released_original | does_not_match_this_file
    soft_binding_matches: bool  # the manifest's soft binding names the payload the watermark gave
    report: C2paReport

    def as_dict(self) -> dict[str, Any]:
        return {"manifest_label": self.manifest_label, "state": self.state, "hard_binding": self.hard_binding,
                "soft_binding_matches": self.soft_binding_matches, "manifest": self.report.as_dict()}


@dataclass
class VerificationReport:
    verdict: str
    media: VideoInfo
    c2pa: C2paReport
    watermark: Detection
    record: dict[str, Any] | None
    recovered_manifest: RecoveredManifest | None = None
    notes: list[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "media": {"width": self.media.width, "height": self.media.height, "fps": self.media.fps,
                      "duration": self.media.duration, "container": self.media.container,
                      "codec": self.media.codec},
            "c2pa": self.c2pa.as_dict(),
            "watermark": self.watermark.as_dict(),
            "record": self.record,
            "recovered_manifest": self.recovered_manifest.as_dict() if self.recovered_manifest else None,
            "notes": self.notes or [],
        }


def verify_media(path: Path, *, trust: c2pa.Context, method: WatermarkMethod, resolve: Resolver,
                 max_seconds: float | None = None) -> VerificationReport:
    """`max_seconds` bounds how much of the clip the watermark detector reads (from the start): the mark is in
    every frame, and a long upload should not cost minutes of decoding. None reads the whole clip."""
    media = probe(path)  # raises MediaError for an empty, truncated or non-video file
    mime = c2pa_mime_for_container(media.container)
    if mime is None:
        report = C2paReport(present=False, state="absent",
                            note=f"{media.container.split(',')[0].upper()} files cannot carry a C2PA manifest "
                            "that c2pa-rs reads (MP4, MOV, M4V and AVI can); verified by watermark only.")
    else:
        report = read_c2pa(path, trust, mime)
    notes: list[str] = []
    detection = detect_watermark(path, media, method, max_seconds, notes)
    resolution = resolve(detection.payload) if detection.detected and detection.payload is not None else None
    if detection.detected and detection.p_value is None and resolution is None:
        # A method without a presence test cannot tell a mark from noise; only a payload that resolves to one of
        # our records (one chance in 2^64 per record) counts as found.
        detection = Detection(False, None, None, detection.frames_used, detection.method, detection.score,
                              "decoded bits match no generation; treated as no watermark")
    recovered = None
    if resolution is not None and resolution.manifest and _needs_recovery(report, resolution):
        recovered = recover_manifest(resolution, detection.payload or b"", path, mime, trust)
    hallmark = report.hallmark if report.present else None
    conflict = bool(resolution is not None and hallmark
                    and hallmark.get("generation_id") != resolution.record.get("generation_id"))
    if conflict:
        notes.append(f"The manifest names generation {hallmark.get('generation_id')}, but the watermark leads to "
                     f"generation {resolution.record.get('generation_id')}.")
    record = resolution.record if resolution is not None else None
    return VerificationReport(_verdict(report, detection, record, recovered, conflict), media, report, detection,
                              record, recovered, notes)


def detect_watermark(path: Path, media: VideoInfo, method: WatermarkMethod, max_seconds: float | None,
                     notes: list[str] | None = None) -> Detection:
    """The watermark in the first `max_seconds` of the clip (all of it when None), streaming frame by frame."""
    fps = media.fps if media.fps > 0 else 25.0
    limit = max(1, int(round(max_seconds * fps))) if max_seconds else None
    with closing(read_frames(path)) as frames:
        detection = detect_frames(islice(frames, limit) if limit else frames, method, media.width & ~1,
                                  media.height & ~1, fps)
    if notes is not None and limit and media.duration and media.duration > max_seconds + 1 / fps:  # type: ignore[operator]
        notes.append(f"The watermark was read from the first {max_seconds:g} s of {media.duration:.0f} s.")
    return detection


def _needs_recovery(report: C2paReport, resolution: Resolution) -> bool:
    """Recover when the file has no manifest, a broken one, or someone else's (then ours is the one that counts)."""
    if not report.present or report.state == "Invalid":
        return True
    return report.manifest_label != resolution.manifest_label


def recover_manifest(resolution: Resolution, payload: bytes, path: Path, mime: str | None,
                     trust: c2pa.Context) -> RecoveredManifest:
    manifest = resolution.manifest or b""
    here = validate_manifest_bytes(manifest, trust, asset=path if mime else None, mime=mime)
    if here.state in ("Trusted", "Valid"):
        # The bytes the manifest was bound to are all here: only the manifest was removed.
        return RecoveredManifest(here.manifest_label, here.state, "matches_this_file",
                                 _names_payload(here, payload), here)
    original = resolution.original
    if original is not None and original.is_file():
        there = validate_manifest_bytes(manifest, trust, asset=original, mime="video/mp4")
        if there.state in ("Trusted", "Valid"):
            return RecoveredManifest(there.manifest_label, there.state, "matches_released_original",
                                     _names_payload(there, payload), there)
    return RecoveredManifest(here.manifest_label, here.signature_state, "does_not_match_this_file",
                             _names_payload(here, payload), here)


def _names_payload(report: C2paReport, payload: bytes) -> bool:
    for binding in report.soft_bindings:
        for block in binding.get("blocks", []):
            try:
                if payload_from_soft_binding_value(str(block.get("value", ""))) == payload:
                    return True
            except InvalidInput:
                continue
    return False


def _verdict(c2pa_report: C2paReport, detection: Detection, record: dict[str, Any] | None,
             recovered: RecoveredManifest | None, conflict: bool) -> str:
    hallmark = c2pa_report.hallmark
    recovery = ""
    if recovered is not None:
        recovery = (f"; the watermark recovered the original manifest ({_recovered_phrase(recovered)}): "
                    f"{_origin(recovered.report.hallmark, recovered.report.generator, record)}")
    elif record is not None:
        recovery = f"; the watermark leads to generation {record.get('generation_id')}"
    withdrawn = " (withdrawn since)" if record and record.get("withdrawn") else ""
    if c2pa_report.state == "Invalid":
        problem = c2pa_report.problem
        if problem == "hard_binding":
            lead = "Tampered: the manifest does not match the video"
        elif problem == "expired":
            lead = ("Credentials expired: the signing certificate is no longer valid and the manifest has no "
                    "trusted timestamp")
        elif problem == "unreadable":
            lead = "Broken credentials: the file's manifest cannot be read"
        else:
            lead = f"Invalid credentials ({', '.join(c2pa_report.failure_codes) or 'no code'})"
        return f"{lead}{recovery}{withdrawn}."
    if c2pa_report.state == "Trusted" and hallmark is not None and not conflict:
        return f"{_origin(hallmark, c2pa_report.generator, record)}; credentials intact{withdrawn}."
    if c2pa_report.present:
        trust = "trusted" if c2pa_report.state == "Trusted" else "valid but not from a trusted signer"
        lead = f"Signed by {c2pa_report.signer or 'an unknown signer'} ({trust})"
        if recovered is not None or record is not None:
            return f"{lead}, but its watermark belongs to a Hallmark generation{recovery}{withdrawn}."
        if hallmark is not None:
            # Anyone can write our assertion label; only a signer in the trust store makes it ours.
            return f"{lead}; it claims Hallmark provenance that this service cannot confirm."
        return f"{lead}; not a Hallmark generation."
    if recovered is not None:
        stripped = ("Credentials stripped from an unchanged video" if recovered.hard_binding == "matches_this_file"
                    else "Credentials stripped")
        return (f"{stripped}; recovered from the watermark: "
                f"{_origin(recovered.report.hallmark, recovered.report.generator, record)} "
                f"(original manifest {_recovered_phrase(recovered)}){withdrawn}.")
    if record is not None:
        return (f"Credentials stripped; the watermark leads to generation {record.get('generation_id')} "
                f"({record.get('status')}), which has no stored manifest{withdrawn}.")
    bound = f"p = {detection.p_value:.1g}" if detection.p_value is not None else "p unknown"
    if detection.detected and detection.payload is not None:
        # Our key made this mark, but no generation of this service carries its payload: it was embedded outside
        # the gateway (`hallmark watermark embed`) or by another deployment that shares the key.
        return (f"A Hallmark watermark is present (payload {detection.payload.hex()}, {bound}), but no generation "
                "of this service carries it: it was marked outside the gateway, so nothing records its origin.")
    if detection.detected:
        return f"A Hallmark watermark seems present ({bound}), but its payload could not be read."
    return f"No Hallmark provenance found (watermark test {bound})."


def _recovered_phrase(recovered: RecoveredManifest) -> str:
    state = {"Trusted": "re-validated as Trusted", "Valid": "valid but its signer is not trusted",
             "Invalid": "which no longer validates"}.get(recovered.state, recovered.state)
    return state


def _origin(hallmark: dict[str, Any] | None, generator: dict[str, Any] | None, record: dict[str, Any] | None) -> str:
    operator = (hallmark or {}).get("operator") or (record or {}).get("operator") or "an unknown operator"
    model = (generator or {}).get("name") or (record or {}).get("model") or "an unknown model"
    when = (record or {}).get("created_at") or (hallmark or {}).get("created_at")
    date = f" on {when[:10]}" if isinstance(when, str) else ""
    return f"Generated by {operator} with {model}{date}"
