"""One generation, from request to released file. The HTTP API, the CLI and the workers all go through here.

    submit: limits → gate → record (queued, or denied with reasons) → audit
    run:    generate → likeness scan of the output → visible + invisible marks → encode → C2PA sign
            → read-back checks → consent re-check (with every cameo found on the output) → rename into outputs/
            → record → audit

Fail closed: any error in marking or signing, a read-back that does not find the mark or a trusted manifest, or a
consent that no longer holds, and the clip is not released. Files are written under temp names and renamed only
at release, so outputs/ never holds a half-written or unsigned clip.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from api import cameos as cameo_records
from api.context import Hallmark
from api.likeness import OUTPUT, REFERENCE_IMAGE, FaceDecision, face_decision, reference_findings, reference_rgb
from api.works import decode_base64
from api.schemas import GenerationCreate, check_limits
from generator import GeneratedVideo, GeneratorError, VideoRequest
from guard.errors import MarkingError, SigningError
from guard.gate import Decision, GateRequest
from guard.likeness.output import OutputFinding, scan_frames
from guard.marks import VisibleMark, label_text, VisibleMarkStyle
from guard.marks.apply import detect_file, stamp_frames
from guard.media import Frame, VideoWriter, temp_path_beside
from guard.provenance import ManifestFacts, build_manifest, ingredients_for, read_c2pa, sign_video
from registry import Account, AuditLog, Generation, Generations, Status, new_watermark_payload
from registry.clock import as_utc

log = logging.getLogger("hallmark.generation")

HALLMARK_VERSION = "0.1.0"


def gate_request(requester_id: str, prompt: str, cameos: list[str], *, commercial: bool = False,
                 reference_image: bytes | None = None, negative_prompt: str | None = None) -> GateRequest:
    return GateRequest(requester_id=requester_id, prompt=prompt, cameo_handles=list(cameos), commercial=commercial,
                       reference_image=reference_image, negative_prompt=negative_prompt)


def reference_path(hm: Hallmark, generation_id: str) -> Path:
    return hm.paths.inputs / f"{generation_id}.image"


def _reference_bytes(hm: Hallmark, generation: Generation) -> bytes | None:
    if not generation.params.get("reference_image"):
        return None
    path = reference_path(hm, generation.id)
    if not path.is_file():  # fail closed: without the image its faces cannot be re-checked
        raise GeneratorError(f"The reference image of generation {generation.id} is missing from {path.parent}.",
                             hint="Submit the request again.")
    return path.read_bytes()


def submit(hm: Hallmark, requester: Account, request: GenerationCreate, *,
           worker: str | None = None) -> Generation:
    """Gate the request and record it: queued when allowed, denied (with every reason) when not. With `worker`,
    an allowed job is recorded already claimed by that worker (running), so that no other worker sharing the
    database can take it: the CLI runs its own job in its own process, even while `hallmark serve` is up."""
    check_limits(request, hm.settings)
    request = request.with_seed()
    prompt = request.prompt.strip()
    reference = (decode_base64(REFERENCE_IMAGE, request.reference_image_base64)
                 if request.reference_image_base64 is not None else None)
    faces = reference_findings(hm, reference)  # also refuses an unreadable image (4xx) before anything is stored
    params = {**request.model_dump(exclude={"prompt", "reference_image_base64"}),
              "reference_image": reference is not None}
    with hm.db.session() as session:
        gated = gate_request(requester.id, prompt, request.cameos, commercial=request.commercial,
                             reference_image=reference, negative_prompt=request.negative_prompt)
        faced = face_decision(hm, session, gated, faces, REFERENCE_IMAGE)
        decision = faced.decision
        generation = Generations(session).add(Generation(
            requester_id=requester.id,
            prompt=prompt,
            params=params,
            decision=decision.as_dict(),
            policy_version=decision.policy_version,
            status=(Status.running if worker else Status.queued) if decision.allowed else Status.denied,
            worker=worker if decision.allowed else None,
            backend=hm.settings.generator,
            watermark_payload=new_watermark_payload() if decision.allowed else None,
            watermark_method=hm.settings.watermark_method if decision.allowed else None,
        ))
        audit = AuditLog(session)
        # What was asked is personal data (erasable); the parameters and the decision are not.
        audit.append("generation.requested", actor_id=requester.id, subject=generation.id,
                     params={k: v for k, v in params.items() if k not in ("negative_prompt", "cameos")},
                     personal={"prompt": prompt, "negative_prompt": request.negative_prompt,
                               "cameos": request.cameos or None})
        audit.append(
            "generation.allowed" if decision.allowed else "generation.denied",
            actor_id=requester.id, subject=generation.id, policy_version=decision.policy_version,
            reasons=[reason.code for reason in decision.reasons], cameo_ids=decision.cameo_ids,
            personal=_reason_details(decision),
        )
        cameo_records.record_mentions(session, generation, gated, decision, faces, faced.hidden_cameo_ids)
        if reference is not None and decision.allowed:
            # Kept only while the job may run (the backend needs it; release re-checks its faces). Written before
            # the commit: if this fails, the record is rolled back with it.
            _write_reference(reference_path(hm, generation.id), reference)
    return generation


def _write_reference(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = temp_path_beside(path)
    try:
        partial.write_bytes(data)
        partial.chmod(0o600)  # may show a person's face
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)


def _reason_details(decision: Decision) -> dict[str, object] | None:
    """The reasons' messages and subjects (they quote prompts and name people): erasable, unlike their codes."""
    if not decision.reasons:
        return None
    return {"reasons": [reason.as_dict() for reason in decision.reasons]}


class _ProgressWriter:
    """Stores job progress, at most twice a second (a poll sees it move; the database is not hammered)."""

    def __init__(self, hm: Hallmark, generation_id: str, listener: Callable[[float], None] | None) -> None:
        self.hm, self.generation_id, self.listener = hm, generation_id, listener
        self._last = 0.0

    def __call__(self, percent: float, *, force: bool = False) -> None:
        if self.listener is not None:
            self.listener(percent)
        now = time.monotonic()
        if not force and now - self._last < 0.5:
            return
        self._last = now
        with self.hm.db.session() as session:
            generations = Generations(session)
            generation = generations.get(self.generation_id)
            generations.set_status(generation, Status(generation.status), progress=min(100.0, percent))


def run(hm: Hallmark, generation_id: str, *, worker: str = "local",
        on_progress: Callable[[float], None] | None = None) -> Generation:
    """Run a queued (or already claimed) generation to the end. Never raises for a failure of the job itself:
    the outcome (completed, failed, withheld) is in the returned record and the audit log. `on_progress` gets
    the percentage as it moves (the CLI's progress bar); the record gets it too, for pollers."""
    with hm.db.session() as session:
        generations = Generations(session)
        generation = generations.get(generation_id)
        if generation.status == Status.queued:
            if not generations.claim(generation_id, worker):
                return generations.get(generation_id)
        elif generation.status != Status.running:
            return generation
    progress = _ProgressWriter(hm, generation_id, on_progress)
    workdir = hm.paths.tmp
    workdir.mkdir(parents=True, exist_ok=True)
    marked = workdir / f"{generation_id}.marked.mp4"
    final = hm.paths.outputs / f"{generation_id}.mp4"
    signed = temp_path_beside(final)
    try:
        generation = _load(hm, generation_id)
        generator = hm.generator()
        params = generation.params
        reference = _reference_bytes(hm, generation)
        video = generator.generate(
            VideoRequest(prompt=generation.prompt, frames=params["frames"], fps=params["fps"],
                         width=params["width"], height=params["height"], seed=params["seed"],
                         negative_prompt=params.get("negative_prompt"),
                         reference_image=reference_rgb(reference) if reference is not None else None),
            lambda fraction: progress(fraction * 80.0),
        )
        findings = _scan_output_for_likeness(hm, video)
        with hm.db.session() as session:
            generations = Generations(session)
            record = generations.get(generation_id)
            record.backend, record.model_name = generator.info.backend, generator.info.name
            generations.set_status(record, Status.marking, progress=80.0)
        payload = bytes.fromhex(generation.watermark_payload or "")
        key_id = _stamp_until_readable(hm, generation, video, payload, marked,
                                       lambda done: progress(80.0 + 15.0 * done / len(video.frames)))
        created = as_utc(generation.created_at)
        facts = ManifestFacts(
            generation_id=generation.id,
            operator=hm.settings.operator_name,
            claim_generator_version=HALLMARK_VERSION,
            model_backend=generator.info.backend,
            model_name=generator.info.name,
            model_version=generator.info.version,
            model_sha256=generator.info.sha256,
            watermark_alg=hm.watermark.soft_binding_alg,
            watermark_payload_hex=payload.hex(),
            duration_ms=int(round(1000 * len(video.frames) / video.fps)),
            policy_version=generation.policy_version,
            cameo_ids=list(generation.decision.get("cameo_ids", [])),
            training_mining=dict(hm.settings.training_mining),
            prompt=generation.prompt if hm.settings.manifest_include_prompt else None,
            created_at=created.isoformat() if created else None,
        )
        hm.paths.outputs.mkdir(parents=True, exist_ok=True)
        manifest_bytes = sign_video(marked, signed, build_manifest(facts), hm.signer(),
                                    ingredients=ingredients_for(facts))
        manifest_label = _check_release(hm, signed)
        return _release(hm, generation_id, worker, signed, final, manifest_bytes, manifest_label, findings, key_id)
    except Exception as exc:  # any failure: nothing is released, the record says why
        log.warning("generation %s failed: %s", generation_id, exc)
        return _fail(hm, generation_id, exc)
    finally:
        marked.unlink(missing_ok=True)
        signed.unlink(missing_ok=True)
        reference_path(hm, generation_id).unlink(missing_ok=True)  # the job has ended: the reference goes


def _load(hm: Hallmark, generation_id: str) -> Generation:
    with hm.db.session() as session:
        return Generations(session).get(generation_id)


def _stamp_until_readable(hm: Hallmark, generation: Generation, video: GeneratedVideo, payload: bytes,
                          target: Path, on_frame: Callable[[int], None]) -> str | None:
    """Stamp at the method's default strength and read the encoded clip back as a verifier would; content too flat
    to carry the mark at that strength (a smooth gradient, a blank sky) is stamped again, stronger. If no strength
    reads back, nothing is released: an unmarked clip must never leave the gateway. Returns the public id of the
    key the mark read back with (the generation records it)."""
    for strength in hm.watermark.strengths:
        _stamp(hm, generation, video, payload, target, on_frame, strength)
        detection = detect_file(target, hm.current_key_watermark)
        if detection.detected and detection.payload == payload:
            if strength != hm.watermark.strengths[0]:
                log.info("generation %s: watermark read back at strength %s", generation.id, strength)
            return detection.key_id
    raise MarkingError("The invisible watermark did not read back from the encoded clip at any strength "
                       f"({', '.join(map(str, hm.watermark.strengths))}); not released.",
                       hint="Try a higher output quality (HALLMARK_OUTPUT_CRF) or another watermark method.")


def _stamp(hm: Hallmark, generation: Generation, video: GeneratedVideo, payload: bytes, target: Path,
           on_frame: Callable[[int], None], strength: float) -> None:
    s = hm.settings
    height, width = video.frames.shape[1:3]
    opacity, scale = s.visible_opacity, s.visible_scale
    for obligation in generation.decision.get("obligations", []):  # the policy may ask for a stronger mark
        if obligation.get("kind") != "visible_mark":
            raise MarkingError(f"The decision carries an obligation this pipeline cannot fulfil: {obligation}; "
                               "not released.")
        opacity = max(opacity, float(obligation.get("min_opacity", opacity)))
        scale = max(scale, float(obligation.get("min_scale", scale)))
    style = VisibleMarkStyle(text=s.visible_text, opacity=opacity, scale=scale)
    visible = VisibleMark(label_text(style, s.operator_name, generation.id[:8]), width, height, video.fps,
                          opacity=style.opacity, scale=style.scale, phase_seed=int(generation.id[:8], 16))
    embedder = hm.watermark.embedder(payload, width, height, video.fps, strength=strength)
    audio = (video.audio, video.sample_rate) if video.audio is not None and video.sample_rate else None
    with VideoWriter(target, width, height, video.fps, crf=s.output_crf, preset=s.output_preset,
                     audio=audio) as writer:
        stamp_frames((Frame.from_rgb(rgb) for rgb in video.frames), writer, visible=visible, embedder=embedder,
                     progress=on_frame)


def _scan_output_for_likeness(hm: Hallmark, video: GeneratedVideo) -> list[OutputFinding]:
    """Faces on ~2 frames per second of the generated clip, matched against every cameo and protected person.
    What may be released is decided at release, by the gate (see `_release`); an error here fails the job."""
    return scan_frames(video.frames, video.fps, hm.likeness, per_second=hm.settings.output_face_samples_per_second)


def _release_decision(hm: Hallmark, session, generation: Generation,  # type: ignore[no-untyped-def]
                      findings: list[OutputFinding]) -> tuple[GateRequest, FaceDecision]:
    """The gate again, now, with every cameo found on the output (see api/likeness.py) and those on the reference
    image counted as requested: consent revoked since submit stops the release."""
    reference = _reference_bytes(hm, generation)
    reference_faces = reference_findings(hm, reference)  # once: face detection on the image is the costly part
    on_reference = [f.match.handle for f in reference_faces if f.match.handle]
    requested = gate_request(generation.requester_id, generation.prompt,
                             [*generation.params.get("cameos", []), *on_reference],
                             commercial=bool(generation.params.get("commercial", False)), reference_image=reference,
                             negative_prompt=generation.params.get("negative_prompt"))
    return requested, face_decision(hm, session, requested, findings, OUTPUT, reference_faces=reference_faces)


def _check_release(hm: Hallmark, signed: Path) -> str:
    """Read the signed clip back as a verifier would: it must carry a Trusted manifest. Trusted includes the hard
    binding (a hash over every byte outside the manifest), so the frames are exactly those whose watermark
    `_stamp_until_readable` read back before signing."""
    report = read_c2pa(signed, hm.trust)
    if report.state != "Trusted" or report.manifest_label is None:
        raise SigningError(f"The signed clip does not verify as Trusted (state {report.state}, "
                           f"codes {report.failure_codes}); not released.",
                           hint="Check the signing certificate with `hallmark keys list`.")
    return report.manifest_label


def _release(hm: Hallmark, generation_id: str, worker: str, signed: Path, final: Path, manifest_bytes: bytes,
             manifest_label: str, findings: list[OutputFinding], watermark_key_id: str | None) -> Generation:
    """Re-check consent, then publish the file and the record together (or neither)."""
    with hm.db.session() as session:
        generations = Generations(session)
        generation = generations.get(generation_id)
        requested, faced = _release_decision(hm, session, generation, findings)
        decision = faced.decision
        cameo_records.record_release(session, generation, requested, findings, decision, faced.hidden_cameo_ids)
        if not decision.allowed:
            generation.decision = {**generation.decision, "release": decision.as_dict()}
            generations.set_status(generation, Status.withheld, error="Consent no longer holds at release: " +
                                   "; ".join(reason.message for reason in decision.reasons))
            AuditLog(session).append("generation.withheld", subject=generation_id,
                                     policy_version=decision.policy_version,
                                     reasons=[reason.code for reason in decision.reasons],
                                     personal=_reason_details(decision))
            return generation
        generation.output_path = str(final)
        generation.output_sha256 = _sha256(signed)
        generation.manifest = manifest_bytes
        generation.manifest_label = manifest_label
        generation.watermark_key_id = watermark_key_id
        generations.set_status(generation, Status.completed, progress=100.0)
        AuditLog(session).append("generation.completed", subject=generation_id, worker=worker,
                                 output_sha256=generation.output_sha256, manifest_label=manifest_label)
        signed.replace(final)  # publish, then commit: if the commit fails the file is taken back
        try:
            session.commit()
        except Exception:
            final.unlink(missing_ok=True)
            raise
    return generation


def _fail(hm: Hallmark, generation_id: str, exc: Exception) -> Generation:
    """Record the failure. The leaf (permanent, public to auditors) gets only a code; the message, which may quote
    a prompt, a name or a third party's exception text, is erasable personal data beside it."""
    error = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    code = getattr(exc, "code", None)
    with hm.db.session() as session:
        generations = Generations(session)
        generation = generations.get(generation_id)
        generations.set_status(generation, Status.failed, error=error)
        AuditLog(session).append("generation.failed", subject=generation_id,
                                 error_code=code if isinstance(code, str) else type(exc).__name__,
                                 personal={"error": error})
        return generation


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
