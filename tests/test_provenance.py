"""Content Credentials at the guard level, with real c2pa-rs signing and validation and real video (PyAV):
the manifest's assertions, the reference-image ingredient, key checks, the callback (KMS/HSM) signer, a
timestamp authority that fails closed, and what validation says about tampered, foreign and expired credentials."""

from __future__ import annotations

import datetime as dt
import http.server
import io
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image

from guard.errors import InvalidInput, KeyMaterialError, SigningError
from guard.media import Frame, VideoWriter, read_frames
from guard.provenance import (
    ManifestFacts,
    ReferenceImage,
    build_manifest,
    callback_signer,
    file_signer,
    ingredients_for,
    payload_from_soft_binding_value,
    read_c2pa,
    sign_video,
    soft_binding_value,
    trust_context,
    validate_manifest_bytes,
)
from guard.provenance.keys import check_signing_credential, issue_signing_certificate, make_root_ca
from guard.provenance.manifest import GENERATIVE_AI
from guard.provenance.signing import load_sign_callback, pem_signer

PAYLOAD = bytes.fromhex("0123456789abcdef")


def facts(**overrides) -> ManifestFacts:  # type: ignore[no-untyped-def]
    values = dict(generation_id="g" * 32, operator="Acme Video", claim_generator_version="0.1.0",
                  model_backend="diffusers", model_name="tiny-wan", model_version="hallmark-tiny-wan-1",
                  model_sha256="ab" * 32, watermark_alg="org.hallmark.test.1", watermark_payload_hex=PAYLOAD.hex(),
                  duration_ms=2000, policy_version="sha256:policy", cameo_ids=["cameo1"],
                  created_at="2026-11-21T12:00:00+00:00")
    values.update(overrides)
    return ManifestFacts(**values)


@pytest.fixture(scope="module")
def ca():  # type: ignore[no-untyped-def]
    return make_root_ca("Acme Video")


@pytest.fixture(scope="module")
def credential(ca):  # type: ignore[no-untyped-def]
    return issue_signing_certificate(ca, "Acme Video")


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    rng = np.random.default_rng(7)
    with VideoWriter(path, 160, 128, 12, preset="ultrafast") as writer:
        for _ in range(12):
            writer.write(Frame.from_rgb(rng.integers(0, 255, (128, 160, 3), dtype=np.uint8)))
    return path


def mdat_payload_offset(data: bytes) -> int:
    """Where the video data (the top-level `mdat` box's payload) starts, walking the MP4's top-level boxes."""
    offset = 0
    while offset + 8 <= len(data):
        size, kind = int.from_bytes(data[offset:offset + 4], "big"), data[offset + 4:offset + 8]
        header = 8
        if size == 1:
            size, header = int.from_bytes(data[offset + 8:offset + 16], "big"), 16
        if kind == b"mdat":
            return offset + header
        offset += size or len(data)
    raise AssertionError("no mdat box")


def signed(clip: Path, target: Path, signer, manifest_facts: ManifestFacts | None = None) -> bytes:  # type: ignore[no-untyped-def]
    chosen = manifest_facts or facts()
    return sign_video(clip, target, build_manifest(chosen), signer, ingredients=ingredients_for(chosen))


def test_signed_clip_is_trusted_with_every_assertion(ca, credential, clip: Path, tmp_path: Path) -> None:
    png = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 200, dtype=np.uint8)).save(png, "PNG")
    reference = ReferenceImage(png.getvalue(), "image/png", "reference.png")
    target = tmp_path / "signed.mp4"
    manifest_bytes = signed(clip, target, pem_signer(credential.certificate_pem, credential.private_key_pem),
                            facts(reference_image=reference))
    assert manifest_bytes and target.stat().st_size > clip.stat().st_size

    report = read_c2pa(target, trust_context([ca.certificate_pem]))
    assert (report.state, report.failure_codes) == ("Trusted", [])
    assert report.signer == "Acme Video Content Credentials" and report.issuer == "Acme Video"
    created, watermarked = report.actions
    assert created["action"] == "c2pa.created" and created["digitalSourceType"] == GENERATIVE_AI
    assert report.generator == {"name": "tiny-wan", "version": "hallmark-tiny-wan-1", "backend": "diffusers",
                                "model_sha256": "ab" * 32}
    assert created["parameters"]["ingredients"], "the created action points at the reference ingredient"
    assert watermarked["action"] == "c2pa.watermarked" and watermarked["parameters"]["alg"] == "org.hallmark.test.1"
    (binding,) = report.soft_bindings
    assert binding["alg"] == "org.hallmark.test.1"
    assert binding["blocks"] == [{"scope": {"timespan": {"start": 0, "end": 2000}}, "value": "ASNFZ4mrze8="}]
    assert payload_from_soft_binding_value(binding["blocks"][0]["value"]) == PAYLOAD
    assert report.assertions["cawg.training-mining"]["entries"] == {
        "cawg.ai_training": {"use": "notAllowed"}, "cawg.ai_generative_training": {"use": "notAllowed"},
        "cawg.data_mining": {"use": "notAllowed"}}
    assert report.hallmark == {"generation_id": "g" * 32, "operator": "Acme Video", "policy_version": "sha256:policy",
                               "cameo_ids": ["cameo1"], "created_at": "2026-11-21T12:00:00+00:00",
                               "reference_image_sha256": reference.sha256}
    (ingredient,) = report.ingredients
    assert ingredient["relationship"] == "inputTo" and ingredient["format"] == "image/png"
    assert "thumbnail" not in ingredient, "no picture of a reference image goes into a public manifest"
    assert "prompt" not in report.hallmark


def test_prompt_and_training_choices_follow_the_operator(ca, credential, clip: Path, tmp_path: Path) -> None:
    chosen = facts(prompt="a red fox in snow",
                   training_mining={"cawg.ai_training": "notAllowed", "cawg.data_mining": "allowed"})
    signed(clip, tmp_path / "s.mp4", pem_signer(credential.certificate_pem, credential.private_key_pem), chosen)
    report = read_c2pa(tmp_path / "s.mp4", trust_context([ca.certificate_pem]))
    assert report.hallmark["prompt"] == "a red fox in snow"
    assert report.assertions["cawg.training-mining"]["entries"] == {"cawg.ai_training": {"use": "notAllowed"},
                                                                   "cawg.data_mining": {"use": "allowed"}}
    with pytest.raises(InvalidInput, match="allowed, notAllowed|one of"):
        build_manifest(facts(training_mining={"cawg.ai_training": "maybe"}))


def test_one_flipped_byte_in_the_video_data_is_invalid(ca, credential, clip: Path, tmp_path: Path) -> None:
    target = tmp_path / "signed.mp4"
    signed(clip, target, pem_signer(credential.certificate_pem, credential.private_key_pem))
    data = bytearray(target.read_bytes())
    data[mdat_payload_offset(data) + 400] ^= 0x01
    tampered = tmp_path / "tampered.mp4"
    tampered.write_bytes(bytes(data))
    report = read_c2pa(tampered, trust_context([ca.certificate_pem]))
    assert report.state == "Invalid"
    assert "assertion.bmffHash.mismatch" in report.failure_codes
    assert report.problem == "hard_binding"


def test_another_ca_is_valid_but_untrusted_until_its_root_is_configured(credential, clip: Path,
                                                                         tmp_path: Path) -> None:
    other_root = make_root_ca("Elsewhere Media")
    other = issue_signing_certificate(other_root, "Elsewhere Media")
    target = tmp_path / "other.mp4"
    signed(clip, target, pem_signer(other.certificate_pem, other.private_key_pem))
    ours_only = read_c2pa(target, trust_context([make_root_ca("Acme Video").certificate_pem]))
    assert ours_only.state == "Valid" and ours_only.failure_codes == ["signingCredential.untrusted"]
    assert read_c2pa(target, trust_context([other_root.certificate_pem])).state == "Trusted"


def test_expired_certificate(ca, clip: Path, tmp_path: Path) -> None:
    # A certificate that expired before signing is refused at signing time (fail closed) ...
    expired = issue_signing_certificate(ca, "Acme Video", days=30,
                                        not_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=90))
    with pytest.raises(SigningError, match="not valid at time of signing"):
        signed(clip, tmp_path / "never.mp4", pem_signer(expired.certificate_pem, expired.private_key_pem))
    assert not (tmp_path / "never.mp4").exists()
    with pytest.raises(KeyMaterialError, match="expired"):
        check_signing_credential(expired.certificate_pem, expired.private_key_pem)
    # ... and a manifest whose certificate expired since (no timestamp) is Invalid with the expiry code.
    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    short = issue_signing_certificate(ca, "Acme Video", lifetime=dt.timedelta(seconds=3), not_before=start)
    target = tmp_path / "short.mp4"
    signed(clip, target, pem_signer(short.certificate_pem, short.private_key_pem))
    expiry = x509.load_pem_x509_certificate(short.certificate_pem).not_valid_after_utc
    time.sleep(max(0.0, (expiry - dt.datetime.now(dt.timezone.utc)).total_seconds() + 1.2))
    report = read_c2pa(target, trust_context([ca.certificate_pem]))
    assert report.state == "Invalid" and "signingCredential.expired" in report.failure_codes
    assert report.problem == "expired"


def test_callback_signer_keeps_the_key_off_disk(ca, credential, clip: Path, tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(credential.private_key_pem, password=None)
    calls: list[int] = []

    def kms_sign(data: bytes) -> bytes:  # what a KMS/HSM client does: the key object never leaves it
        calls.append(len(data))
        return key.sign(data, ec.ECDSA(hashes.SHA256()))  # DER, as cloud KMSs return it

    target = tmp_path / "kms.mp4"
    signed(clip, target, callback_signer(kms_sign, credential.certificate_pem))
    assert calls and read_c2pa(target, trust_context([ca.certificate_pem])).state == "Trusted"

    def broken(data: bytes) -> bytes:
        raise RuntimeError("KMS unavailable")

    with pytest.raises(SigningError):
        signed(clip, tmp_path / "broken.mp4", callback_signer(broken, credential.certificate_pem))
    assert not (tmp_path / "broken.mp4").exists()


def test_sign_callback_is_loaded_by_name() -> None:
    assert load_sign_callback("hashlib:sha256") is not None
    for spec in ("no-colon", "not_a_module_xyz:sign", "hashlib:nope"):
        with pytest.raises(KeyMaterialError):
            load_sign_callback(spec)


def test_signing_credential_checks_say_what_is_wrong(ca, credential) -> None:
    assert check_signing_credential(credential.certificate_pem, credential.private_key_pem) is not None
    other = issue_signing_certificate(ca, "Acme Video")
    with pytest.raises(KeyMaterialError, match="does not belong"):
        check_signing_credential(credential.certificate_pem, other.private_key_pem)
    with pytest.raises(KeyMaterialError, match="CA certificate"):
        check_signing_credential(ca.certificate_pem, ca.private_key_pem)
    with pytest.raises(KeyMaterialError, match="not a PEM"):
        check_signing_credential(b"hello", None)


class _RecordingTsa(http.server.BaseHTTPRequestHandler):
    requests: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        type(self).requests.append((self.headers.get("content-type", ""), body))
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
        pass


def test_timestamp_authority_is_asked_and_its_failure_fails_closed(credential, clip: Path, tmp_path: Path) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _RecordingTsa)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/tsa"
        signer = pem_signer(credential.certificate_pem, credential.private_key_pem, tsa_url=url)
        with pytest.raises(SigningError):
            signed(clip, tmp_path / "tsa.mp4", signer)
    finally:
        server.shutdown()
    assert not (tmp_path / "tsa.mp4").exists()
    content_type, body = _RecordingTsa.requests[0]
    assert content_type == "application/timestamp-query" and body[:1] == b"\x30"  # a DER TimeStampReq
    with pytest.raises(KeyMaterialError, match="http"):
        pem_signer(credential.certificate_pem, credential.private_key_pem, tsa_url="ftp://tsa.example")


def test_a_recovered_manifest_is_judged_by_its_signature_not_by_bytes_it_lost(ca, credential, clip: Path,
                                                                               tmp_path: Path) -> None:
    target = tmp_path / "signed.mp4"
    manifest_bytes = signed(clip, target, pem_signer(credential.certificate_pem, credential.private_key_pem))
    reencoded = tmp_path / "reencoded.mp4"
    with VideoWriter(reencoded, 160, 128, 12, crf=23, preset="ultrafast") as writer:
        for frame in read_frames(target):
            writer.write(frame)
    trust = trust_context([ca.certificate_pem])
    assert read_c2pa(reencoded, trust).state == "absent"
    against_copy = validate_manifest_bytes(manifest_bytes, trust, asset=reencoded, mime="video/mp4")
    assert against_copy.state == "Invalid" and against_copy.failure_codes == ["assertion.bmffHash.mismatch"]
    assert against_copy.signature_state == "Trusted"
    assert validate_manifest_bytes(manifest_bytes, trust, asset=target, mime="video/mp4").state == "Trusted"
    standalone = validate_manifest_bytes(manifest_bytes, trust)
    assert standalone.signature_state == "Trusted" and standalone.hallmark["generation_id"] == "g" * 32
    assert validate_manifest_bytes(b"not a manifest", trust).signature_state == "Invalid"
    untrusted = validate_manifest_bytes(manifest_bytes, trust_context([make_root_ca("Other").certificate_pem]))
    assert untrusted.signature_state == "Valid"  # intact signature from a signer outside our trust store


def test_soft_binding_values_are_base64() -> None:
    assert soft_binding_value(PAYLOAD) == "ASNFZ4mrze8="
    assert payload_from_soft_binding_value("ASNFZ4mrze8") == PAYLOAD  # padding optional
    assert payload_from_soft_binding_value("ASNFZ4mrze8=") == PAYLOAD
    with pytest.raises(InvalidInput):
        payload_from_soft_binding_value("not base64!")


def test_file_signer_reports_missing_keys(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match="missing"):
        file_signer(tmp_path / "nope.pem", tmp_path / "nope.key")


def test_a_trusted_timestamp_keeps_credentials_valid_after_the_certificate_expires(ca, clip: Path,
                                                                                   tmp_path: Path) -> None:
    from tests.local_tsa import LocalTsa

    start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    short = issue_signing_certificate(ca, "Acme Video", lifetime=dt.timedelta(seconds=3), not_before=start)
    target = tmp_path / "stamped.mp4"
    with LocalTsa() as tsa:
        signed(clip, target, pem_signer(short.certificate_pem, short.private_key_pem, tsa_url=tsa.url))
        assert tsa.requests == 1
        with_tsa_root = trust_context([ca.certificate_pem, tsa.credentials.root_pem])
        fresh = read_c2pa(target, with_tsa_root)
        assert fresh.state == "Trusted" and fresh.signing_time is not None
        assert "timeStamp.trusted" in fresh.success_codes
        expiry = x509.load_pem_x509_certificate(short.certificate_pem).not_valid_after_utc
        time.sleep(max(0.0, (expiry - dt.datetime.now(dt.timezone.utc)).total_seconds() + 1.2))
    later = read_c2pa(target, with_tsa_root)
    assert (later.state, later.failure_codes, later.signing_time) == ("Trusted", [], fresh.signing_time)
    # The timestamp counts only when its authority is trusted too.
    assert read_c2pa(target, trust_context([ca.certificate_pem])).problem == "expired"


def test_one_training_mining_setting_keeps_the_other_defaults(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from api.settings import TRAINING_MINING_DEFAULTS, Settings

    settings = Settings(data_dir=tmp_path, training_mining={"cawg.data_mining": "allowed"})
    assert settings.training_mining == {**TRAINING_MINING_DEFAULTS, "cawg.data_mining": "allowed"}
    assert set(settings.training_mining) == {"cawg.ai_training", "cawg.ai_generative_training", "cawg.data_mining"}
