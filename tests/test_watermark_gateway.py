"""The gateway releases clips marked with the default method ("hallmark"), and its read-back finds the payload."""

from __future__ import annotations

from pathlib import Path

from api.context import Hallmark
from api.generation import run, submit
from api.schemas import GenerationCreate
from guard.marks import watermark_key_id
from guard.marks.apply import detect_file
from registry import Accounts, Status


def test_gateway_releases_a_clip_carrying_the_hallmark_watermark(sqlite_initialized) -> None:  # type: ignore[no-untyped-def]
    hm = Hallmark(sqlite_initialized.settings)
    try:
        assert hm.settings.watermark_method == "hallmark"
        assert hm.watermark.soft_binding_alg == "org.hallmark.video.2"
        with hm.db.session() as session:
            admin = Accounts(session).list()[0]
        generation = submit(hm, admin, GenerationCreate(prompt="a lighthouse at dusk", frames=12, fps=12.0,
                                                        width=256, height=256, seed=7))
        released = run(hm, generation.id)
        assert released.status == Status.completed, released.error
        detection = detect_file(Path(released.output_path), hm.watermark)
        assert detection.detected and detection.payload.hex() == released.watermark_payload
        assert detection.p_value <= 1e-6
        # The record names the key the clip was marked with (a mark read with another key is forged: verify.py).
        assert released.watermark_key_id == watermark_key_id(hm.watermark_key) == detection.key_id
    finally:
        hm.close()

