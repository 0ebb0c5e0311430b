"""A generator backend for tests that "draws" real people: it returns frames of a real clip from ../shared/media,
cropped around the face to the requested size. It stands in for a model that renders a registered person nobody
asked for, which the tiny generator (abstract noise) never does. Loaded through the ordinary plug-in path
(HALLMARK_GENERATOR=tests.footage_generator:FootageGenerator);
the clip comes from HALLMARK_TEST_FOOTAGE ("path/to/clip.mkv")."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np

from generator.base import GeneratedVideo, ModelInfo, ProgressCallback, VideoRequest


class FootageGenerator:
    supports_reference_image = False

    info = ModelInfo(backend="test-footage", name="real footage", version="1")

    def generate(self, request: VideoRequest, progress: ProgressCallback) -> GeneratedVideo:
        from guard.likeness.analysis import detect

        path = Path(os.environ["HALLMARK_TEST_FOOTAGE"])  # read per call: a test switches clips between runs
        with av.open(str(path)) as container:
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        frames = [frames[i % len(frames)] for i in range(request.frames)]
        box = detect(frames[0])[0][0]  # crop every frame around the first frame's face, at the requested size
        cx, cy = (box.left + box.right) // 2, (box.top + box.bottom) // 2
        height, width = frames[0].shape[:2]
        left = int(np.clip(cx - request.width // 2, 0, width - request.width))
        top = int(np.clip(cy - request.height // 3, 0, height - request.height))
        progress(1.0)
        return GeneratedVideo(frames=np.stack([f[top:top + request.height, left:left + request.width]
                                               for f in frames]), fps=request.fps)
