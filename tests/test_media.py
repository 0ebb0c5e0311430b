"""Reading frames as a player shows them: every display matrix a container can hold (the eight quarter-turn and
mirror orientations, and a broken one) read upright, from real encoded files."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from skimage import data

from guard.media import Frame, probe, read_frames

# The upright picture: a photograph, so that any turn or mirror of it is plainly different from it.
UPRIGHT = np.ascontiguousarray(data.astronaut()[::4, ::2][:96, :160])  # 96 x 160, not square


def _write_tagged(path: Path, stored: np.ndarray, matrix_from: tuple[int, bool, bool] | list[int]) -> None:
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=10)
        video.height, video.width = stored.shape[:2]
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "10"}
        if isinstance(matrix_from, tuple):
            video.set_display_rotation(matrix_from[0], hflip=matrix_from[1], vflip=matrix_from[2])
        else:
            video.set_display_matrix(matrix_from)
        for _ in range(3):
            for packet in video.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)


def _luma(rgb: np.ndarray) -> np.ndarray:
    return Frame.from_rgb(rgb).y.astype(np.float64)


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
@pytest.mark.parametrize("hflip,vflip", [(False, False), (True, False), (False, True)])
def test_every_display_orientation_reads_upright(tmp_path: Path, degrees: int, hflip: bool, vflip: bool) -> None:
    # PyAV's documented meaning of the tag: turn counter-clockwise by `degrees`, then mirror. So these stored
    # pictures are what a player shows upright.
    stored = UPRIGHT
    if vflip:
        stored = stored[::-1]
    if hflip:
        stored = stored[:, ::-1]
    stored = np.ascontiguousarray(np.rot90(stored, -degrees // 90))
    path = tmp_path / "tagged.mp4"
    _write_tagged(path, stored, (degrees, hflip, vflip))

    info = probe(path)
    assert (info.width, info.height) == (160, 96)
    frames = list(read_frames(path))
    assert len(frames) == 3
    read = frames[0].y.astype(np.float64)
    error = np.abs(read - _luma(UPRIGHT)).mean()
    assert error < 3.0, f"mean luma error {error:.1f} levels: not read as the player shows it"


def test_a_broken_display_matrix_is_ignored_as_players_do(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp4"
    _write_tagged(path, UPRIGHT, [0] * 9)
    info = probe(path)
    assert (info.width, info.height, info.rotation, info.mirrored) == (160, 96, 0, False)
    assert np.abs(next(read_frames(path)).y.astype(np.float64) - _luma(UPRIGHT)).mean() < 3.0
