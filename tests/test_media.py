"""Reading frames as a player shows them: every display matrix a container can hold (the eight quarter-turn and
mirror orientations, and a broken one) read upright, from real encoded files."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
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


@pytest.mark.parametrize("matrix", [
    [0] * 9,  # broken
    [46000, -47000, 0, 47000, 46000, 0, 0, 0, 1 << 30],  # about 46 degrees
])
def test_a_display_matrix_that_turns_by_another_angle_is_ignored(tmp_path: Path, matrix: list[int]) -> None:
    """Applied as the nearest quarter turn, a 46-degree tag, added to a marked clip without re-encoding, turned the
    picture for the detector alone and hid the mark."""
    path = tmp_path / "tagged.mp4"
    _write_tagged(path, UPRIGHT, matrix)
    info = probe(path)
    assert (info.width, info.height, info.rotation, info.mirrored) == (160, 96, 0, False)
    assert np.abs(next(read_frames(path)).y.astype(np.float64) - _luma(UPRIGHT)).mean() < 3.0


@pytest.mark.parametrize("scale", [2.0, 0.999, 0.5])
def test_a_scaled_quarter_turn_is_still_a_quarter_turn(tmp_path: Path, scale: float) -> None:
    """A quarter turn with a scale (FFmpeg reads its rotation the same) is applied: ignored, a clip turned on its
    side and tagged back upright at 2x read sideways and hid the mark."""
    stored = np.ascontiguousarray(np.rot90(UPRIGHT, -1))  # what a 90-degree counter-clockwise tag shows upright
    unit = round(65536 * scale)
    path = tmp_path / "scaled.mp4"
    _write_tagged(path, stored, [0, -unit, 0, unit, 0, 0, 0, 0, 1 << 30])
    assert (probe(path).width, probe(path).height, probe(path).rotation) == (160, 96, 90)
    assert np.abs(next(read_frames(path)).y.astype(np.float64) - _luma(UPRIGHT)).mean() < 3.0


def _gif(width: int, height: int) -> bytes:
    """A GIF whose screen is width x height, holding three 1x1 frames: under 100 bytes at any declared size."""
    header = b"GIF89a" + struct.pack("<HH", width, height) + bytes([0x80, 0, 0]) + b"\0\0\0\xff\xff\xff"
    frame = (b"\x21\xf9\x04\x00\x0a\x00\x00\x00" + b"\x2c" + struct.pack("<HHHH", 0, 0, 1, 1) + b"\x00"
             + b"\x02\x02\x44\x01\x00")
    return header + frame * 3 + b"\x3b"


def _png(width: int, height: int) -> bytes:
    """A greyscale PNG of width x height, all black: it compresses to almost nothing."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    packer = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte, then the pixels
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


def test_a_small_file_declaring_a_huge_picture_is_refused_without_decoding_it(tmp_path: Path) -> None:
    """An 89-byte GIF declaring a 16000x16000 screen took verification to 1.2 GB, and a PNG of that size took 2 GB
    just to open, before the 8K limit refused them. Now no decoder allocates more than an 8K frame: the peak memory
    of a process reading them stays that of reading a small clip."""
    small_gif, huge_gif = tmp_path / "small.gif", tmp_path / "huge.gif"
    small_gif.write_bytes(_gif(64, 64))
    huge_gif.write_bytes(_gif(16000, 16000))
    huge_png = tmp_path / "huge.png"
    huge_png.write_bytes(_png(16000, 16000))
    assert len(huge_gif.read_bytes()) < 100 and huge_png.stat().st_size < 300_000
    assert (probe(small_gif).width, probe(small_gif).height) == (64, 64)  # the construction is a GIF that reads

    # The peak is the process's own high-water mark (VmHWM, which starts afresh at exec): getrusage's ru_maxrss
    # would report the pytest worker's peak, inherited through fork.
    script = ("import re, sys\nfrom pathlib import Path\nfrom guard.errors import MediaError\n"
              "from guard.media import probe, read_frames\n"
              "try:\n    list(read_frames(Path(sys.argv[1])))\n    probe(Path(sys.argv[1]))\n"
              "except MediaError as error:\n    print(error.message)\n"
              "print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) // 1024)\n")
    for path in (huge_gif, huge_png):
        done = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                              cwd=Path(__file__).parent.parent, timeout=120)
        message, peak_mib = done.stdout.strip().splitlines()
        assert "larger than the 8192x4320 (8K) that Hallmark reads" in message, done.stdout + done.stderr
        assert int(peak_mib) < 300, f"{path.name}: {peak_mib} MiB to refuse it"


def test_a_portrait_8k_frame_is_read(tmp_path: Path) -> None:
    """FFmpeg checks its pixel cap against the size padded to its stride (4320 wide counts as 4352), so a cap of
    exactly 8192x4320 refused a portrait DCI 8K clip as undecodable."""
    from guard.media import VideoWriter

    portrait = tmp_path / "portrait.mp4"
    with VideoWriter(portrait, 4320, 8192, 1, preset="ultrafast") as writer:
        writer.write(Frame(np.full((8192 * 3 // 2, 4320), 128, dtype=np.uint8)))
    assert (probe(portrait).width, probe(portrait).height) == (4320, 8192)
    assert [frame.y.shape for frame in read_frames(portrait)] == [(8192, 4320)]
