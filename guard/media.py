"""Video in and out through PyAV (FFmpeg inside the wheel; no `ffmpeg` binary).

Frames travel through Hallmark as planar YUV 4:2:0 arrays of shape (H*3/2, W), the layout PyAV and every H.264
encoder use natively: decoding and encoding need no colour conversion, and the marks work on the luma plane
directly. `Frame` gives named views of the three planes. Everything streams: one frame in memory at a time.

Frames are read upright, as a player shows them: a phone's portrait clip is stored as landscape pictures with a
display matrix in its container (a rotation, sometimes with a mirror, as a front camera may write), which
`read_frames` applies as the `ffmpeg` command does by default. The marks are therefore drawn and read in the
orientation people see, so a marked clip that a platform re-encodes upright, or that keeps its tag, still reads; a
tag added to a marked clip without re-encoding it hides the mark only by turning what people see (a quarter or half
turn, which the detector does not try); and what `stamp_file` writes is upright and needs no tag.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import av.error
from av.sidedata.sidedata import Type as SideDataType
import numpy as np

from guard.errors import InvalidInput, MediaError


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frame_count: int | None  # from the container header; None when it does not say
    duration: float | None  # seconds
    has_audio: bool
    container: str  # FFmpeg's format name, e.g. "mov,mp4,m4a,3gp,3g2,mj2"
    codec: str
    rotation: int = 0  # degrees (0, 90, 180, 270) the player turns the stored pictures counter-clockwise, after
    # mirroring them left to right when `mirrored`; width and height above are already the upright size, the one
    # `read_frames` yields
    mirrored: bool = False
    time_base: Fraction | None = None  # of the video stream's timestamps


class Frame:
    """One picture as a (H*3/2, W) uint8 yuv420p buffer, with views of its planes (writes go to the buffer).

    `key` says whether the decoder produced it as a key (intra) frame; frames made in memory count as key frames.
    Lossy encoders keep key frames closest to the source, which the watermark detector uses to weigh evidence.

    `pts` is the decoded frame's presentation time in its stream's time base (None for frames made in memory): a
    writer given that time base keeps the source's timing, variable frame rates included."""

    __slots__ = ("buffer", "height", "key", "pts", "width")

    def __init__(self, buffer: np.ndarray, key: bool = True, pts: int | None = None) -> None:
        self.buffer = np.ascontiguousarray(buffer)  # the plane views below are views of its flat memory
        self.height = buffer.shape[0] * 2 // 3
        self.width = buffer.shape[1]
        self.key = key
        self.pts = pts

    @classmethod
    def from_rgb(cls, rgb: np.ndarray) -> "Frame":
        if rgb.dtype != np.uint8:
            rgb = np.clip(np.rint(rgb.astype(np.float32) * (255.0 if rgb.max() <= 1.0 else 1.0)), 0, 255)
            rgb = rgb.astype(np.uint8)
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        return cls(video_frame.reformat(format="yuv420p").to_ndarray())

    @property
    def y(self) -> np.ndarray:
        return self.buffer[: self.height]

    @property
    def u(self) -> np.ndarray:
        return self._chroma(0)

    @property
    def v(self) -> np.ndarray:
        return self._chroma(1)

    def _chroma(self, plane: int) -> np.ndarray:
        """The U (0) or V (1) plane. They follow the luma in the flat buffer, U then V, each (H/2) x (W/2): taken
        from the flat memory rather than as whole rows of the buffer, because when H/2 is odd (a 1080x1350 or
        480x270 frame) a chroma plane ends half-way through a row."""
        h, w = self.height, self.width
        size = (h // 2) * (w // 2)
        start = h * w + plane * size
        return self.buffer.reshape(-1)[start : start + size].reshape(h // 2, w // 2)

    def to_rgb(self) -> np.ndarray:
        return self.to_video_frame().to_ndarray(format="rgb24")

    def to_video_frame(self) -> av.VideoFrame:
        return av.VideoFrame.from_ndarray(self.buffer, format="yuv420p")

    def turned(self, quarter_turns: int, mirrored: bool = False) -> "Frame":
        """This picture turned counter-clockwise by `quarter_turns` x 90 degrees, after a left-right mirror when
        `mirrored` (each plane apart, 4:2:0 kept)."""
        planes = (self.y, self.u, self.v)
        if mirrored:
            planes = tuple(np.fliplr(plane) for plane in planes)
        y, u, v = (np.rot90(plane, quarter_turns) for plane in planes)
        buffer = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(-1, y.shape[1])
        return Frame(buffer, key=self.key, pts=self.pts)


# The FFmpeg demuxers a file may be read with: containers and elementary streams that read only the file itself.
# FFmpeg otherwise picks a demuxer by the file's bytes and name, and some open other files or URLs the file lists
# (hls: a .m3u8 playlist names segments at any local path or URL; concat, image2 sequences, dash and others do the
# same), which an uploaded file must never make the server do. An allow-list fails closed for demuxers added in a
# new FFmpeg. Besides MP4/MOV, Matroska/WebM and AVI it holds what cameras, broadcasts and older tools still write:
# MPEG-TS (a clip saved from a live stream), MPEG-PS (.mpg, .vob), FLV, ASF (.wmv), Ogg, MXF and raw H.264/H.265.
# PNG and JPEG stills are read so that they can be refused as "a picture, not a video" with a reason of their own.
VIDEO_DEMUXERS = ("mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "avi", "mpegts", "mpeg", "flv",
                  "asf", "ogg", "mxf", "h264", "hevc", "gif", "png_pipe", "jpeg_pipe")
# FFmpeg demuxers that render text or character art as video (a .txt, .nfo or .ans file opens as "tty" and decodes
# into frames of glyphs). Such a file is not a clip: verifying it would report "no watermark" on something that was
# never a video, so it is refused like any other unreadable input (after opening, to say why).
TEXT_DEMUXERS = frozenset({"tty", "bin", "xbin", "adf", "idf"})
# Only those demuxers, and only the local file: no protocol can be reached from inside the file either.
# And no decoder, the one that probes the file while it is opened included, allocates a frame much larger than 8K
# (MAX_FRAME_SIZE below): a PNG says its size only in its first frame, and a 2 MB one of 16000x16000 took 2 GB to open.
# FFmpeg checks the size padded to its stride alignment (a portrait 4320x8192 frame counts as 4352x8192), so the
# decoders' cap leaves room for that; the 8K rule itself is `refuse_oversized`'s, on the real size.
MAX_PIXELS = 4608 * 8192
_OPEN_OPTIONS = {"format_whitelist": ",".join((*VIDEO_DEMUXERS, *sorted(TEXT_DEMUXERS))), "protocol_whitelist": "file",
                 "max_pixels": str(MAX_PIXELS)}
SUPPORTED_INPUTS = ("Supported inputs are videos in MP4, MOV, M4V, MKV, WebM, AVI, MPEG-TS, MPEG-PS, FLV, WMV, Ogg or "
                    "MXF files, raw H.264/H.265 streams, and GIF.")


def _open_for_reading(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise InvalidInput(f"No such file: {path}", hint="Check the path.")
    if path.stat().st_size == 0:
        raise MediaError(f"{path.name} is empty (0 bytes).", hint="Upload or pass the complete video file.")
    # FFmpeg takes a file named .jpg for an image sequence ("image2", which reads every file a pattern names, so it
    # is not allowed) before looking at its bytes: a JPEG is opened as the single picture it is.
    with path.open("rb") as head:
        jpeg = head.read(3) == b"\xff\xd8\xff"
    try:
        container = av.open(str(path), mode="r", format="jpeg_pipe" if jpeg else None, options=_OPEN_OPTIONS)
    except av.error.ArgumentError as exc:  # FFmpeg recognised the file as a format outside the allow-list
        raise MediaError(f"{path.name} is in a format Hallmark does not read.",
                         hint=f"{SUPPORTED_INPUTS} Playlists (.m3u8) and lists of other files are refused.") from exc
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        # FFmpeg's own words only ("Invalid data found when processing input"): its str() adds an errno and the
        # full path, which says nothing to the person and would show a server's directories in an API answer.
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise MediaError(f"{path.name} is not a readable video ({reason}).", hint=SUPPORTED_INPUTS) from exc
    if container.format.name in TEXT_DEMUXERS:
        container.close()
        raise MediaError(
            f"{path.name} is a text file, not a video (FFmpeg would only render its characters as frames).",
            hint=SUPPORTED_INPUTS,
        )
    if not container.streams.video:
        container.close()
        raise MediaError(f"{path.name} has no video stream.", hint="Pass a video file, not audio or an image.")
    for stream in container.streams.video:  # the decoders used from here on get the cap too (see MAX_PIXELS)
        stream.codec_context.options = {"max_pixels": str(MAX_PIXELS)}
    return container


@dataclass(frozen=True)
class Orientation:
    """How a player shows the stored pictures: mirrored left to right when `mirrored`, then turned counter-clockwise
    by `quarter_turns` x 90 degrees."""

    quarter_turns: int = 0
    mirrored: bool = False

    @classmethod
    def of(cls, frame: av.VideoFrame) -> "Orientation":
        """Read from the frame's display matrix (FFmpeg hands it on with each decoded frame). A quarter turn, with
        or without a mirror, is applied whatever the scale on each axis (a scale, such as an anamorphic desqueeze,
        does not turn the picture); a matrix that turns by another angle (46 degrees) is ignored. Applied as the
        nearest quarter turn, such a tag, added to a marked clip without re-encoding, turned the picture for the
        detector alone and hid the mark (the detector reads turns of up to 10 degrees).

        FFmpeg's `rotation` alone takes a mirror for a half turn (a left-right mirror reads as 180 degrees), which
        would show the picture upside down. So the mirror is read from the sign of the matrix's determinant, and the
        turn that follows it from the rotation as the `ffmpeg` command's autorotation does (fftools: with a mirror,
        0 degrees is a vertical flip, i.e. a half turn after the mirror; 180 is the mirror alone; 90 and -90 are the
        transposes)."""
        matrix = next((np.frombuffer(bytes(data), dtype=np.int32).astype(np.float64) for data in frame.side_data
                       if data.type == SideDataType.DISPLAYMATRIX), None)
        if matrix is None or matrix.size < 9:
            return cls()
        # Each entry's sign only (16.16 fixed point; below 1/1000 counts as zero): a quarter turn has exactly one
        # non-zero entry in each row and column of the 2x2 part, whatever the scale.
        a, b, c, d = (float(np.sign(round(matrix[index] / 65536.0, 3))) for index in (0, 1, 3, 4))
        if abs(a * d - b * c) != 1.0 or (a != 0) == (b != 0):
            return cls()  # another angle, or an all-zero matrix (which PyAV's `rotation` raises on)
        # FFmpeg's av_display_rotation_get, on the matrix brought to unit scale.
        rotation = -math.degrees(math.atan2(b, a))  # counter-clockwise, -180..180
        mirrored = a * d - b * c < 0
        turns = round(rotation / 90.0) + (2 if mirrored else 0)
        return cls(turns % 4, mirrored)


def _orientation(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> Orientation:
    """The stream's display orientation. FFmpeg hands it on with each decoded frame, not with the stream, so the
    first frame is decoded; a file that cannot give one is reported by `read_frames`."""
    try:
        for frame in container.decode(stream):
            return Orientation.of(frame)
    except av.error.FFmpegError:
        pass
    return Orientation()


# No frame larger than DCI 8K (8192x4320, H.264's largest level) is decoded: nothing Hallmark makes or reads needs
# more, and the decoded frame is itself the cost (an 89-byte GIF can declare a 16000x16000 screen, which took
# verification to 1.2 GB before it was refused). `probe` refuses by the container's header before it decodes the
# first frame; `refuse_oversized` is there for frames that grow later.
MAX_FRAME_SIZE = (8192, 4320)  # DCI 8K, the largest frame Hallmark reads (either way round)


def refuse_oversized(width: int, height: int, lead: str = "The video's frames are") -> None:
    """MediaError (a 422 over HTTP) for frames of more pixels than DCI 8K."""
    if width * height > MAX_FRAME_SIZE[0] * MAX_FRAME_SIZE[1]:
        raise MediaError(f"{lead} {width}x{height}, larger than the {MAX_FRAME_SIZE[0]}x{MAX_FRAME_SIZE[1]} (8K) "
                         "that Hallmark reads.",
                         hint="Use a copy downscaled to 8K or less: the watermark survives resizing.")


def _check_size(path: Path, stream: av.video.stream.VideoStream) -> None:
    """Refuse, before any frame is decoded, frames over 8K by the header, and a file whose size opening could not
    find: opening decodes a frame when the container does not give the size (PNG, GIF), so no size means that
    decoding failed, or was refused for a frame over the cap (MAX_PIXELS)."""
    width, height = stream.codec_context.width, stream.codec_context.height
    refuse_oversized(width, height)
    if not (width and height):
        raise MediaError(f"{path.name} has no picture Hallmark can decode: it is corrupt, or its frames are larger "
                         f"than the {MAX_FRAME_SIZE[0]}x{MAX_FRAME_SIZE[1]} (8K) that Hallmark reads.",
                         hint=SUPPORTED_INPUTS)


def probe(path: Path) -> VideoInfo:
    """What the file holds, from its header and its first frame (decoded for its display orientation, and only when
    the header's frame size is at most 8K). Raises MediaError for what is not a readable video."""
    container = _open_for_reading(path)
    try:
        stream = container.streams.video[0]
        _check_size(path, stream)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        width, height = stream.codec_context.width, stream.codec_context.height
        orientation = _orientation(container, stream)
        if orientation.quarter_turns % 2:
            width, height = height, width
        return VideoInfo(
            width=width,
            height=height,
            fps=fps,
            frame_count=stream.frames or None,
            duration=duration,
            has_audio=bool(container.streams.audio),
            container=container.format.name,
            codec=stream.codec_context.name,
            rotation=90 * orientation.quarter_turns,
            mirrored=orientation.mirrored,
            time_base=stream.time_base,
        )
    finally:
        container.close()


def read_frames(path: Path, *, start: float | None = None) -> Iterator[Frame]:
    """Decode `path` frame by frame as yuv420p, upright (its display matrix applied, as a player does). Odd sizes
    lose their last row/column (4:2:0 needs even sizes).

    Raises MediaError when the file cannot be decoded, including a truncated file that yields no frame at all;
    a file cut short after some frames yields the frames that decode (that is what players show, too)."""
    container = _open_for_reading(path)
    produced = 0
    try:
        stream = container.streams.video[0]
        _check_size(path, stream)
        stream.thread_type = "AUTO"
        if start:
            container.seek(int(start / stream.time_base), stream=stream, any_frame=False, backward=True)
        try:
            for video_frame in container.decode(stream):
                if start and video_frame.time is not None and video_frame.time < start:
                    continue
                # Taken before any conversion: the converted copy need not carry the decoder's side data.
                key, pts, orientation = bool(video_frame.key_frame), video_frame.pts, Orientation.of(video_frame)
                width, height = video_frame.width & ~1, video_frame.height & ~1
                if video_frame.format.name != "yuv420p" or (width, height) != (video_frame.width,
                                                                               video_frame.height):
                    video_frame = video_frame.reformat(width=width, height=height, format="yuv420p")
                produced += 1
                frame = Frame(video_frame.to_ndarray(), key=key, pts=pts)
                yield frame.turned(orientation.quarter_turns, orientation.mirrored) if orientation != Orientation() \
                    else frame
        except av.error.FFmpegError as exc:
            if produced == 0:
                reason = getattr(exc, "strerror", None) or type(exc).__name__  # not str(exc): see _open_for_reading
                raise MediaError(
                    f"{path.name} could not be decoded ({reason}).",
                    hint="The file may be truncated or not a video.",
                ) from exc
        if produced == 0:
            raise MediaError(f"{path.name} contains no decodable video frames.",
                             hint="The file may be truncated or not a video.")
    finally:
        container.close()


class VideoWriter:
    """Encode yuv420p frames to an MP4 (H.264 by default, faststart), optionally with audio.

    Audio comes either from samples (a generator's output: float32 in [-1, 1], shape (channels, samples), encoded
    to AAC) or from another file (its packets are copied unchanged, e.g. when stamping an uploaded clip).

    Frames are timed one `1/fps` apart, unless the writer is given the source's `time_base`: then each frame keeps
    its own `pts` (a phone's variable frame rate, dropped or repeated frames), so the video stays in step with the
    audio copied from that same source."""

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        fps: float,
        *,
        codec: str = "libx264",
        crf: int | None = 18,
        preset: str | None = "medium",
        pix_fmt: str = "yuv420p",
        bitrate: int | None = None,
        audio: tuple[np.ndarray, int] | None = None,
        audio_from: Path | None = None,
        options: dict[str, str] | None = None,
        time_base: Fraction | None = None,
    ) -> None:
        if width % 2 or height % 2:
            raise InvalidInput(f"Video size {width}x{height} must be even for 4:2:0 encoding.")
        self.path = path
        self.width, self.height = width, height
        container_options = {"movflags": "+faststart"} if path.suffix.lower() in (".mp4", ".mov", ".m4v") else {}
        self._container = av.open(str(path), mode="w", options=container_options)
        rate = Fraction(fps).limit_denominator(1001)
        self._video = self._container.add_stream(codec, rate=rate)
        self._video.width, self._video.height = width, height
        self._video.pix_fmt = pix_fmt
        self._source_timing = time_base is not None
        self._video.time_base = time_base or 1 / rate
        self._video.codec_context.time_base = self._video.time_base
        # One frame's duration in that time base: the step for a frame that comes without a timestamp.
        self._step = max(1, round(1 / (rate * self._video.time_base)))
        self._last_pts: int | None = None
        self._offset = 0
        codec_options = dict(options or {})
        if crf is not None:
            codec_options["crf"] = str(crf)
        if preset is not None and codec in ("libx264", "libx265"):
            codec_options["preset"] = preset
        if codec == "libx265":
            codec_options.setdefault("x265-params", "log-level=error")
        if bitrate is not None:
            self._video.bit_rate = bitrate
        self._video.options = codec_options
        self._video.thread_type = "AUTO"
        self._index = 0
        self._audio_packets: list[av.Packet] = []
        self._audio_source: av.container.InputContainer | None = None
        self._audio_samples = audio
        self._audio_stream = None
        if audio_from is not None:
            self._copy_audio_from(audio_from)
        elif audio is not None:
            samples, sample_rate = audio
            self._audio_stream = self._container.add_stream("aac", rate=sample_rate)
            self._audio_stream.layout = "stereo" if samples.shape[0] >= 2 else "mono"

    def _copy_audio_from(self, source: Path) -> None:
        self._audio_source = av.open(str(source), mode="r")
        if not self._audio_source.streams.audio:
            self._audio_source.close()
            self._audio_source = None
            return
        in_stream = self._audio_source.streams.audio[0]
        self._audio_stream = self._container.add_stream_from_template(in_stream)
        # Audio is small next to video (minutes of AAC are a few MB): read its packets once, mux them in order.
        for packet in self._audio_source.demux(in_stream):
            if packet.dts is None:
                continue
            packet.stream = self._audio_stream
            self._audio_packets.append(packet)

    def write(self, frame: Frame) -> None:
        video_frame = frame.to_video_frame()
        video_frame.pts = self._next_pts(frame)
        self._index += 1
        for packet in self._video.encode(video_frame):
            self._container.mux(packet)

    def _next_pts(self, frame: Frame) -> int:
        """The source's timestamp when the writer keeps its timing, else the frame's index. Timestamps must rise:
        a missing one follows the last by a frame's duration, a repeated or earlier one by one tick, and the first
        is moved to 0 should it be negative (an edit list's lead-in), which MP4 cannot start with."""
        if not self._source_timing:
            return self._index
        if frame.pts is None:
            pts = 0 if self._last_pts is None else self._last_pts + self._step
        elif self._last_pts is None:
            self._offset = -min(frame.pts, 0)
            pts = frame.pts + self._offset
        else:
            pts = max(frame.pts + self._offset, self._last_pts + 1)
        self._last_pts = pts
        return pts

    @property
    def frames_written(self) -> int:
        return self._index

    def close(self) -> None:
        for packet in self._video.encode():
            self._container.mux(packet)
        for packet in self._audio_packets:
            self._container.mux(packet)
        if self._audio_samples is not None and self._audio_stream is not None:
            self._encode_audio_samples()
        self._container.close()
        if self._audio_source is not None:
            self._audio_source.close()

    def _encode_audio_samples(self) -> None:
        assert self._audio_samples is not None and self._audio_stream is not None
        samples, sample_rate = self._audio_samples
        samples = np.clip(samples.astype(np.float32), -1.0, 1.0)
        layout = "stereo" if samples.shape[0] >= 2 else "mono"
        samples = samples[:2] if layout == "stereo" else samples[:1]
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = 0
        for packet in self._audio_stream.encode(frame):
            self._container.mux(packet)
        for packet in self._audio_stream.encode(None):
            self._container.mux(packet)

    def abort(self) -> None:
        """Close and delete the partial file (used on any error, so nothing half-written stays behind)."""
        try:
            self._container.close()
        except Exception:  # the container may already be broken; the file is removed either way
            pass
        if self._audio_source is not None:
            self._audio_source.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def temp_path_beside(final: Path, suffix: str = ".part") -> Path:
    """A temp name in the same directory as `final`, so the finishing rename is atomic."""
    return final.with_name(f".{final.name}.{os.getpid()}.{os.urandom(4).hex()}{suffix}{final.suffix}")
