"""Verifying where a clip came from: C2PA read + validate, invisible watermark detection, the generation the
watermark leads to, the original manifest recovered through it when the file's own is missing or broken (C2PA
"durable content credentials"), and one sentence that sums it up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import c2pa

from guard.errors import InvalidInput, MediaError
from guard.marks.apply import detect_frames
from guard.marks.invisible import Detection, WatermarkMethod
from guard.media import Frame, VideoInfo, probe, read_frames, refuse_oversized
from guard.provenance.manifest import payload_from_soft_binding_value
from guard.provenance.reading import (C2PA_FORMATS, C2paReport, c2pa_mime_for_container, read_c2pa,
                                      validate_manifest_bytes)


@dataclass(frozen=True)
class Resolution:
    """What a watermark payload leads to in the store."""

    record: dict[str, Any]  # the generation's fields this viewer may see
    manifest: bytes | None  # the manifest store signed into the released clip
    manifest_label: str | None
    original: Path | None = None  # the released file, when it is still in the output store


Resolver = Callable[[bytes], Resolution | None]  # watermark payload -> what it leads to, or None
LabelResolver = Callable[[str], Resolution | None]  # manifest label -> the generation released with it, or None


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
    # How the file's Hallmark manifest was confirmed as this service's: "store" (it is the manifest stored for one
    # of its generations), "signing_key" (signed under this service's own CA), or None (not confirmed).
    confirmed_by: str | None = None
    watermark_read: ReadWindow | None = None

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
            "confirmed_by": self.confirmed_by,
            "watermark_read": self.watermark_read.as_dict() if self.watermark_read else None,
            "notes": self.notes or [],
        }


def verify_media(path: Path, *, trust: c2pa.Context, method: WatermarkMethod, resolve: Resolver,
                 max_seconds: float | None = None, by_label: LabelResolver | None = None,
                 own_trust: c2pa.Context | None = None) -> VerificationReport:
    """`max_seconds` bounds how much of the clip the watermark detector reads (from the start): the mark is in
    every frame, and a long upload should not cost minutes of decoding. None reads the whole clip.

    A manifest's own Hallmark assertion is what its signer says of itself, and any signer in the trust store (a
    partner's CA too) can write it; so a Hallmark origin is stated only when this service confirms it: the manifest
    is the one stored for a generation (`by_label`), or it validates against `own_trust`, a trust context holding
    only this service's own CA roots. Without them nothing is confirmed (fail closed)."""
    media = probe(path)  # raises MediaError for an empty, truncated, non-video or larger than 8K file
    mime = c2pa_mime_for_container(media.container)
    if mime is None:
        report = C2paReport(present=False, state="absent",
                            note=f"{media.container.split(',')[0].upper()} files cannot carry a C2PA manifest "
                            f"that c2pa-rs reads ({C2PA_FORMATS} can); verified by watermark only.")
    else:
        report = read_c2pa(path, trust, mime)
    notes: list[str] = []
    detection, window = read_watermark(path, media, method, max_seconds)
    if note := window_note(window, media, max_seconds):
        notes.append(note)
    resolution = resolve(detection.payload) if detection.detected and detection.payload is not None else None
    forged = _forged_generation(detection, resolution)
    if forged is not None and resolution is not None:
        notes.append(f"The watermark carries the payload of generation {forged}, but it was read with watermark key "
                     f"{detection.key_id}, not the key that generation was marked with "
                     f"({resolution.record.get('watermark_key_id')}): whoever holds that key made this mark.")
        resolution = None
    if detection.detected and detection.p_value is None and resolution is None:
        # A method without a presence test cannot tell a mark from noise; only a payload that resolves to one of
        # our records (one chance in 2^64 per record) counts as found.
        detection = Detection(False, None, None, detection.frames_used, detection.method, detection.score,
                              "decoded bits match no generation; treated as no watermark")
    if detection.payload is not None and detection.retired_key is not None:
        notes.append(f"The watermark was read with a retired watermark key ({detection.retired_key}), as a clip "
                     "marked before that key was rotated is. If it was retired because it leaked, whoever holds it "
                     "could have made this mark; a Trusted manifest is then the stronger evidence.")
    stored = stored_generation(report, by_label, trust)
    confirmed_by = _confirmation(report, stored, path, mime, own_trust, detection, resolution, notes)
    recovered = None
    if resolution is not None and resolution.manifest and _needs_recovery(report, resolution, stored):
        recovered = recover_manifest(resolution, detection.payload or b"", path, mime, trust)
    hallmark = report.hallmark if report.present else None
    conflict = bool(resolution is not None and hallmark
                    and hallmark.get("generation_id") != resolution.record.get("generation_id"))
    if conflict:
        notes.append(f"The manifest names generation {hallmark.get('generation_id')}, but the watermark leads to "
                     f"generation {resolution.record.get('generation_id')}.")
    record = resolution.record if resolution is not None else stored.record if stored is not None else None
    verdict = _verdict(report, detection, record, recovered, conflict, confirmed_by is not None, forged)
    return VerificationReport(verdict, media, report, detection, record, recovered, notes, confirmed_by, window)


def stored_generation(report: C2paReport, by_label: LabelResolver | None,
                       trust: c2pa.Context) -> Resolution | None:
    """The generation whose stored manifest is the very one this file carries, or None.

    The label alone proves nothing (anyone can copy a label into a manifest of their own): the stored manifest must
    have the same signer (certificate serial and issuer) and the same assertions, the hard binding included, which
    the file's own validation has just checked against its bytes."""
    if by_label is None or not report.present or report.state != "Trusted" or not report.manifest_label:
        return None
    stored = by_label(report.manifest_label)
    if stored is None or not stored.manifest:
        return None
    kept = validate_manifest_bytes(stored.manifest, trust)  # the manifest alone: no file hashing, cheap
    same = (kept.manifest_label == report.manifest_label and kept.signer == report.signer
            and kept.issuer == report.issuer and kept.cert_serial_number == report.cert_serial_number
            and kept.assertions == report.assertions)
    return stored if same else None


def _confirmation(report: C2paReport, stored: Resolution | None, path: Path, mime: str | None,
                  own_trust: c2pa.Context | None, detection: Detection, resolution: Resolution | None,
                  notes: list[str]) -> str | None:
    """How the file's Hallmark manifest is confirmed as this service's ("store", "signing_key"), or None.

    A manifest that is not the stored one but validates under this service's own CA ("signing_key") is confirmed
    only when the file's own watermark agrees: it carries the payload the manifest declares and leads (read with
    the key its generation was marked with) to the generation the manifest names. Only the gateway signs, and
    generation ids and payloads are public, so a signature alone proves only that the key signed: a retired key
    that leaked keeps validating, and could otherwise sign any footage in any generation's name."""
    if not report.present or report.state != "Trusted" or report.hallmark is None:
        return None
    if stored is not None:
        return "store"
    if own_trust is None or mime is None or read_c2pa(path, own_trust, mime).state != "Trusted":
        return None
    claimed = report.hallmark.get("generation_id")
    if (resolution is not None and detection.payload in _bound_payloads(report)
            and resolution.record.get("generation_id") == claimed):
        return "signing_key"
    notes.append(f"The manifest is signed with this service's key and names generation {claimed!s:.64}, but it is "
                 "not the manifest stored for that generation and the video's watermark does not confirm it: the "
                 "key was used outside the gateway, so its word is not taken.")
    return None


def _bound_payloads(report: C2paReport) -> list[bytes]:
    """The watermark payloads the manifest's soft bindings declare (values that do not parse are skipped)."""
    payloads = []
    for binding in report.soft_bindings:
        blocks = binding.get("blocks")
        for block in blocks if isinstance(blocks, list) else []:
            try:
                if isinstance(block, dict):
                    payloads.append(payload_from_soft_binding_value(str(block.get("value", ""))))
            except InvalidInput:
                continue
    return payloads


# What reading the watermark may cost per request, whatever the upload claims. Decoding is the cost (a 388 KB clip of
# 4K frames at 1000 fps decoded for 16 s), so it is bounded by frames and by pixels as well as by time:
# - at most MAX_FRAME_RATE frames per second of the window (counted, not timed, so that timestamps cannot lie the
#   bound away). The detector samples about 15 frames per second (tiled/detect.py), so 60 cover any real frame rate;
#   a faster clip is read for a shorter time.
# - at most as many pixels as that many 1080p frames: a 4K clip is read for a quarter of the window, which still
#   gives the detector over a hundred frames (it works on a copy whose short side is at most 360 px).
# - no frame larger than DCI 8K (media.MAX_FRAME_SIZE): such a clip is refused rather than downscaled, since decoding
#   the big frame is itself the cost, and the mark (drawn relative to the short side) reads as well in a downscaled
#   copy. `probe` refuses it by the header, before decoding a frame.
# Clips up to 1080p at up to 60 fps are read exactly as before: every frame of the window.
MAX_FRAME_RATE = 60
WINDOW_PIXELS_PER_FRAME = 1920 * 1080


@dataclass
class ReadWindow:
    """How much of the clip the watermark detector was given."""

    frames: int = 0  # decoded and offered to the detector (which samples among them)
    seconds: float | None = None  # of video covered; None when the whole clip was read
    stopped_by: str | None = None  # why the rest was left unread: "time", "frames" or "pixels"; None: all read

    def as_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "seconds": self.seconds, "complete": self.stopped_by is None,
                "stopped_by": self.stopped_by}


def detect_watermark(path: Path, media: VideoInfo, method: WatermarkMethod, max_seconds: float | None,
                     notes: list[str] | None = None) -> Detection:
    """The watermark in the first `max_seconds` of the clip (all of it when None), streaming frame by frame, with
    the work bounded as described above; a note says when part of the clip was left unread."""
    detection, window = read_watermark(path, media, method, max_seconds)
    note = window_note(window, media, max_seconds)
    if notes is not None and note:
        notes.append(note)
    return detection


def read_watermark(path: Path, media: VideoInfo, method: WatermarkMethod,
                   max_seconds: float | None) -> tuple[Detection, ReadWindow]:
    fps = media.fps if media.fps > 0 else 25.0
    window = ReadWindow()
    with closing(read_frames(path)) as frames:
        detection = detect_frames(_bounded(frames, media, fps, max_seconds, window), method, media.width & ~1,
                                  media.height & ~1, fps)
    return detection, window


def _bounded(frames: Iterator[Frame], media: VideoInfo, fps: float, max_seconds: float | None,
             window: ReadWindow) -> Iterator[Frame]:
    """The frames of the window, counting them into `window`; stops at the first frame past a bound."""
    max_frames = max(1, int(max_seconds * MAX_FRAME_RATE)) if max_seconds else None
    max_pixels = max_frames * WINDOW_PIXELS_PER_FRAME if max_frames else None
    pixels = 0
    start: float | None = None
    for index, frame in enumerate(frames):
        refuse_oversized(frame.width, frame.height, "The video has frames of")  # frames that grow later
        size = frame.width * frame.height
        time = _frame_time(frame, media, index, fps)
        start = time if start is None else start
        if max_seconds:
            elapsed = max(0.0, time - start)
            stop = ("time" if elapsed >= max_seconds else "frames" if max_frames and window.frames >= max_frames
                    else "pixels" if max_pixels and window.frames and pixels + size > max_pixels else None)
            if stop is not None:
                window.stopped_by, window.seconds = stop, (max_seconds if stop == "time" else elapsed)
                return
        pixels += size
        window.frames += 1
        yield frame


def _frame_time(frame: Frame, media: VideoInfo, index: int, fps: float) -> float:
    """Seconds from the stream's time origin: the frame's own timestamp, or its place at the nominal rate."""
    if frame.pts is not None and media.time_base is not None:
        return float(frame.pts * media.time_base)
    return index / fps


def window_note(window: ReadWindow, media: VideoInfo, max_seconds: float | None) -> str | None:
    """What a reader should know of the part left unread, or None when the whole clip was read."""
    if window.stopped_by is None or window.seconds is None:
        return None
    read, total = _two_durations(window.seconds, media.duration)
    lead = f"The watermark was read from the first {read} s of {total} s" if total else \
        f"The watermark was read from the first {read} s"
    if window.stopped_by == "frames":
        return (f"{lead}: a verification decodes at most {MAX_FRAME_RATE} frames per second of its "
                f"{max_seconds:g} s window, and this clip has more.")
    if window.stopped_by == "pixels":
        return (f"{lead}: a verification decodes at most as many pixels as {max_seconds:g} s of 1080p at "
                f"{MAX_FRAME_RATE} fps.")
    return f"{lead}."


def _two_durations(read: float, total: float | None) -> tuple[str, str | None]:
    """Both durations with as few significant digits (at least 3) as tell them apart: "1 s of 2 s", "0.45 s of
    3 s", "30 s of 30.03 s", never "30 s of 30 s" for a clip a frame longer than the window."""
    if total is None:
        return f"{read:.3g}", None
    for digits in range(3, 7):
        shown_read, shown_total = f"{read:.{digits}g}", f"{total:.{digits}g}"
        if shown_read != shown_total:
            return shown_read, shown_total
    return shown_read, shown_total


def made_with_another_key(read_with: str | None, marked_with: str | None) -> bool:
    """Whether a mark read with the key `read_with` cannot be that of a generation marked with `marked_with` (public
    key ids, recorded at release): a retired key that leaked can mark any footage with any payload, and payloads
    are public (in every manifest). A key not known on either side proves nothing."""
    return read_with is not None and marked_with is not None and read_with != marked_with


def _forged_generation(detection: Detection, resolution: Resolution | None) -> str | None:
    """The generation whose payload the mark carries, when the mark was made with another key than its own."""
    if resolution is None or not made_with_another_key(detection.key_id, resolution.record.get("watermark_key_id")):
        return None
    return str(resolution.record.get("generation_id"))


def _needs_recovery(report: C2paReport, resolution: Resolution, stored: Resolution | None) -> bool:
    """Recover unless the file carries the very manifest stored for the watermark's generation: when it has none, a
    broken one, or someone else's (then ours is the one that counts). Not by the label alone: anyone can copy a
    label into a manifest of their own, which kept the original from being recovered."""
    if not report.present or report.state == "Invalid":
        return True
    return stored is None or stored.manifest_label != resolution.manifest_label


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
    return payload in _bound_payloads(report)


def _verdict(c2pa_report: C2paReport, detection: Detection, record: dict[str, Any] | None,
             recovered: RecoveredManifest | None, conflict: bool, confirmed: bool, forged: str | None = None) -> str:
    hallmark = c2pa_report.hallmark
    recovery = ""
    if recovered is not None:
        recovery = (f"; the watermark recovered the original manifest ({_recovered_phrase(recovered)}): "
                    f"{_origin(recovered.report.hallmark, recovered.report.generator, record)}")
    elif record is not None:
        recovery = f"; the watermark leads to generation {record.get('generation_id')}"
    withdrawn = " (withdrawn since)" if record and record.get("withdrawn") else ""
    if c2pa_report.state == "Invalid":
        return _invalid_verdict(c2pa_report, record, recovered, recovery, withdrawn)
    if conflict and record is not None:
        # Both are this service's words about the clip, and they disagree: that is the finding, not a footnote.
        named = (hallmark or {}).get("generation_id")
        says = f"says generation {named}" if named else "names no generation"
        return (f"Conflicting provenance: the manifest, signed by {_signer(c2pa_report)}, {says}, but the "
                f"watermark says generation {record.get('generation_id')}{recovery}{withdrawn}.")
    if c2pa_report.state == "Trusted" and hallmark is not None and confirmed:
        return f"{_origin(hallmark, c2pa_report.generator, record)}; credentials intact{withdrawn}."
    if c2pa_report.present:
        lead = f"Signed by {_signer(c2pa_report)}"
        if recovered is not None or record is not None:
            return f"{lead}, but its watermark belongs to a Hallmark generation{recovery}{withdrawn}."
        forgery = (f", and carries a forged Hallmark watermark (the payload of generation {forged}, made with "
                   f"another key)" if forged is not None else "")
        if hallmark is not None:
            # Anyone can write our assertion label, a trusted partner too; only our store or our own CA confirms it.
            return f"{lead}; it claims Hallmark provenance that this service cannot confirm{forgery}."
        return f"{lead}; not a Hallmark generation{forgery}."
    if forged is not None:
        retired = " (a retired key)" if detection.retired_key else ""
        return (f"Forged watermark: it carries the payload of generation {forged} but was made with watermark key "
                f"{detection.key_id}{retired}, not the one that generation was marked with; this is not that "
                "generation.")
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


def _invalid_verdict(c2pa_report: C2paReport, record: dict[str, Any] | None, recovered: RecoveredManifest | None,
                     recovery: str, withdrawn: str) -> str:
    problem = c2pa_report.problem
    if (problem == "hard_binding" and record is not None and recovered is not None
            and recovered.hard_binding == "matches_this_file"):
        # The video's own manifest (found through its watermark) matches these bytes: the video is unchanged and
        # only the manifest it carries belongs elsewhere (pasted from another clip).
        named = (c2pa_report.hallmark or {}).get("generation_id")
        carried = (f"the manifest of generation {named}" if named
                   else f"a manifest signed by {c2pa_report.signer or 'an unknown signer'}")
        return (f"Manifest swapped: this video is generation {record.get('generation_id')}, unchanged, but it "
                f"carries {carried}, which does not match it; its own manifest, recovered through the watermark, "
                f"matches this file ({_recovered_phrase(recovered)}): "
                f"{_origin(recovered.report.hallmark, recovered.report.generator, record)}{withdrawn}.")
    if problem == "hard_binding":
        lead = "Tampered: the manifest does not match the video"
    elif problem == "expired":
        lead = ("Credentials expired: the signing certificate is no longer valid and the manifest has no trusted "
                "timestamp")
    elif problem == "unreadable":
        lead = "Broken credentials: the file's manifest cannot be read"
    else:
        lead = f"Invalid credentials ({', '.join(c2pa_report.failure_codes) or 'no code'})"
    return f"{lead}{recovery}{withdrawn}."


def _signer(report: C2paReport) -> str:
    trust = "trusted" if report.state == "Trusted" else "valid but not from a trusted signer"
    return f"{report.signer or 'an unknown signer'} ({trust})"


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
