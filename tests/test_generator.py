"""Generation backends: the tiny pipeline loaded through the ordinary `diffusers` backend (the code path a real
checkpoint takes), plug-in backends, and audio kept through the whole gateway."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from generator import GeneratedVideo, GeneratorError, ModelInfo, VideoRequest, load_generator
from generator.diffusers_backend import DiffusersGenerator


def test_tiny_pipeline_loads_through_the_diffusers_backend(tiny_model: Path) -> None:
    backend = load_generator("diffusers", tiny_dir=Path("/nonexistent"), path=tiny_model, steps=2)
    assert isinstance(backend, DiffusersGenerator) and backend.info.backend == "diffusers"
    assert backend.info.name == "WanPipeline:tiny-wan" and len(backend.info.sha256 or "") == 64
    seen: list[float] = []
    request = VideoRequest(prompt="a red kite over the sea", frames=10, fps=8, width=128, height=160, seed=5)
    video = backend.generate(request, seen.append)
    # Wan needs 4k+1 frames: 13 are made and the clip is trimmed to the 10 asked for.
    assert video.frames.shape == (10, 160, 128, 3) and video.frames.dtype == np.uint8
    assert video.fps == 8 and seen[-1] == 1.0 and seen == sorted(seen)
    again = backend.generate(request, lambda _: None)
    assert np.array_equal(video.frames, again.frames), "same seed, same frames"
    other = backend.generate(VideoRequest(**{**request.__dict__, "seed": 6}), lambda _: None)
    assert not np.array_equal(video.frames, other.frames)


def test_tiny_pipeline_makes_clips_wider_than_512_px(tiny_model: Path) -> None:
    """A side over 512 px (more patches than the first tiny config's rotary embeddings covered, which failed at run
    time); 720p and long clips take the same path but cost a minute each on CPU, so one wide size stands for them."""
    backend = DiffusersGenerator(tiny_model, steps=1)
    video = backend.generate(VideoRequest(prompt="a wide harbour", frames=5, fps=12, width=640, height=368, seed=3),
                             lambda _: None)
    assert video.frames.shape == (5, 368, 640, 3)


def test_text_to_video_pipeline_refuses_a_reference_image(tiny_model: Path) -> None:
    backend = DiffusersGenerator(tiny_model, steps=1)
    assert backend.supports_reference_image is False
    request = VideoRequest(prompt="x", frames=5, fps=8, width=128, height=128, seed=1,
                           reference_image=np.zeros((128, 128, 3), np.uint8))
    with pytest.raises(GeneratorError, match="does not take a reference image") as caught:
        backend.generate(request, lambda _: None)
    assert caught.value.status == 422


def test_backend_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(GeneratorError, match="not a diffusers pipeline directory"):
        load_generator("diffusers", tiny_dir=tmp_path, path=tmp_path)
    with pytest.raises(GeneratorError, match="needs a pipeline directory") as caught:
        load_generator("diffusers", tiny_dir=tmp_path)
    assert "HALLMARK_GENERATOR_PATH" in (caught.value.hint or "")
    with pytest.raises(GeneratorError, match="Unknown generator"):
        load_generator("sora", tiny_dir=tmp_path)
    with pytest.raises(GeneratorError, match="Cannot load the generator"):
        load_generator("tests.nowhere:Nothing", tiny_dir=tmp_path)


class ToneBackend:
    """A plug-in backend (HALLMARK_GENERATOR=tests.test_generator:ToneBackend) that also makes sound: a moving
    gradient with a 440 Hz tone, to show the gateway keeps a backend's audio track."""

    info = ModelInfo(backend="plugin", name="tone-gradient", version="1")
    supports_reference_image = False

    def generate(self, request: VideoRequest, progress) -> GeneratedVideo:  # type: ignore[no-untyped-def]
        ramp = np.linspace(0, 255, request.width, dtype=np.float32)
        frames = np.stack([
            np.repeat(np.roll(ramp, 8 * i)[None, :, None], request.height, 0).repeat(3, 2)
            for i in range(request.frames)
        ]).astype(np.uint8)
        rate = 48000
        seconds = request.frames / request.fps
        tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate).astype(np.float32)
        progress(1.0)
        return GeneratedVideo(frames=frames, fps=request.fps, audio=np.stack([tone, tone]), sample_rate=rate)


def test_audio_from_a_backend_is_kept_in_the_released_clip(sqlite_initialized) -> None:
    from api import generation as pipeline
    from api.context import Hallmark
    from api.schemas import GenerationCreate
    from guard.media import probe
    from registry import Accounts

    settings = sqlite_initialized.settings.model_copy(update={"generator": "tests.test_generator:ToneBackend"})
    hm = Hallmark(settings)
    with hm.db.session() as session:
        admin = Accounts(session).require_by_name("admin")
    started = time.monotonic()
    queued = pipeline.submit(hm, admin, GenerationCreate(prompt="a gradient with a tone", frames=24, fps=12))
    done = pipeline.run(hm, queued.id)
    assert done.status == "completed", done.error
    info = probe(Path(done.output_path))
    assert info.has_audio and info.frame_count == 24 and abs(info.duration - 2.0) < 0.1
    assert done.model_name == "tone-gradient" and done.backend == "plugin"
    assert time.monotonic() - started < 120
    hm.close()


def test_a_job_submitted_for_a_worker_is_already_claimed_by_it(sqlite_initialized) -> None:
    """The CLI records its job as claimed, so that a `hallmark serve` worker on the same database cannot take it
    (it once did: the CLI then found the job gone and exited 1 without a word)."""
    from api import generation as pipeline
    from api.context import Hallmark
    from api.schemas import GenerationCreate
    from registry import Accounts, Generations

    settings = sqlite_initialized.settings.model_copy(update={"generator": "tests.test_generator:ToneBackend"})
    hm = Hallmark(settings)
    try:
        with hm.db.session() as session:
            admin = Accounts(session).require_by_name("admin")
        mine = pipeline.submit(hm, admin, GenerationCreate(prompt="a gradient with a tone", frames=12, fps=12),
                               worker="cli:test")
        assert (mine.status, mine.worker) == ("running", "cli:test")
        with hm.db.session() as session:
            generations = Generations(session)
            assert mine.id not in generations.queued_ids() and not generations.claim(mine.id, "server:0")
        done = pipeline.run(hm, mine.id, worker="cli:test")
        assert done.status == "completed" and done.worker == "cli:test", done.error
    finally:
        hm.close()
