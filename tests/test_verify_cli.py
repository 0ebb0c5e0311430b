"""`hallmark verify FILE` in a subprocess: the same report as the API, and clear errors with exit code 2 for bad
files (never a traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from api.context import Hallmark
from tests.conftest import Initialized, run_cli
from guard.media import Frame, VideoWriter
from guard.provenance import ManifestFacts, build_manifest, sign_video


def test_verify_cli_reports_and_refuses_bad_files(sqlite_initialized: Initialized, tmp_path: Path) -> None:
    plain = tmp_path / "plain.mp4"
    with VideoWriter(plain, 96, 64, 8, preset="ultrafast") as writer:
        for shade in range(0, 240, 30):
            writer.write(Frame.from_rgb(np.full((64, 96, 3), shade, dtype=np.uint8)))
    hm = Hallmark(sqlite_initialized.settings)
    signed = tmp_path / "signed.mp4"
    sign_video(plain, signed, build_manifest(ManifestFacts(
        generation_id="cli", operator="Hallmark", claim_generator_version="t", model_backend="t", model_name="m",
        model_version="t", model_sha256=None, watermark_alg="org.hallmark.t.1", watermark_payload_hex="22" * 8,
        duration_ms=1000, policy_version="p")), hm.signer())
    hm.close()

    result = run_cli(["verify", str(signed), "--json"], sqlite_initialized.env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    # Signed with this service's key, but naming a generation it never made (only the gateway signs): not confirmed.
    assert report["c2pa"]["state"] == "Trusted" and report["verdict"] == (
        "Signed by Hallmark Content Credentials (trusted); it claims Hallmark provenance that this service cannot "
        "confirm.")
    assert any("names generation cli" in note and "does not confirm it" in note for note in report["notes"])

    empty, garbage = tmp_path / "empty.mp4", tmp_path / "garbage.mov"
    empty.write_bytes(b"")
    garbage.write_bytes(np.random.default_rng(0).bytes(20_000))
    for path, message in ((empty, "is empty (0 bytes)"), (garbage, "is not a readable video")):
        failed = run_cli(["verify", str(path)], sqlite_initialized.env)
        assert failed.returncode == 2 and message in failed.stderr and "Traceback" not in failed.stderr
