"""Clips stored the way phones store them, for the tests of reading upright and keeping timing: the pictures lie
on their side (turned a quarter clockwise) and the container's display rotation of 90° tells the player to turn
them back counter-clockwise; frames come at the times given (a variable frame rate), optionally with an AAC track."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_phone_clip(upright: Iterable[np.ndarray], path: Path, times_ms: list[int], *,
                     audio_seconds: float = 0.0) -> Path:
    """Encode upright RGB pictures (even sizes), one per entry of `times_ms`, as a portrait phone clip."""
    # A quarter turn clockwise: the pictures as the sensor saw them.
    stored = [np.ascontiguousarray(np.rot90(rgb, -1)) for rgb in upright]
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=30)
        video.height, video.width = stored[0].shape[:2]
        video.pix_fmt = "yuv420p"
        video.time_base = video.codec_context.time_base = Fraction(1, 1000)
        video.set_display_rotation(90)
        packets = []
        for time, rgb in zip(times_ms, stored):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = time
            packets += video.encode(frame)
        packets += video.encode(None)
        if audio_seconds > 0:
            sound = container.add_stream("aac", rate=48000)
            ticks = np.arange(int(48000 * audio_seconds))
            tone = (0.2 * np.sin(ticks * 2 * np.pi * 440 / 48000)).astype(np.float32)[None, :]
            samples = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            samples.sample_rate, samples.pts = 48000, 0
            packets += [*sound.encode(samples), *sound.encode(None)]
        for packet in packets:
            container.mux(packet)
    return path
