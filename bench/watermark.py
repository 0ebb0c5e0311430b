"""`python -m bench.watermark [--quick]`: the invisible watermark benchmark. Builds the corpus, marks every clip
with Hallmark's method and with invisible-watermark's dwtDct, dwtDctSvd and rivaGan side by side, runs the named
attack suite (bench/attacks.py), and writes the tables (robustness, quality, speed, memory, false positives) to
BENCHMARKS.md, plus a side-by-side PNG crop (unmarked | marked | 20x difference) under bench/results/.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import brentq
from scipy.stats import norm
from skimage.metrics import structural_similarity

from bench.attacks import ATTACKS, encode
from bench.baselines import ImwatermarkBaseline
from bench.corpus import MEDIA, OUT, Clip, build, small_frames, synthetic_frames, write_clip
from bench.report import markdown_table, write_section
from guard.marks import watermark_method
from guard.marks.apply import stamp_file
from guard.marks.tiled.code import PayloadCode
from guard.marks.tiled.detect import THRESHOLD
from guard.marks.tiled.stats import bonferroni_p, log_rademacher_tail
from guard.marks.visible import VisibleMark
from guard.media import Frame, probe, read_frames

KEY = hashlib.sha256(b"hallmark benchmark key").digest()
WRONG_KEY = hashlib.sha256(b"some other operator").digest()
RESULTS = Path(__file__).resolve().parent / "results"
BASELINE_MAX_PIXELS = 640 * 480  # dwtDct/dwtDctSvd run on the clips up to this size (their cost grows with it)


@dataclass
class Outcome:
    recovered: bool
    bit_accuracy: float
    detected: bool
    p_value: float | None


@dataclass
class MethodStats:
    outcomes: dict[str, list[Outcome]] = field(default_factory=lambda: defaultdict(list))
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    embed_ms: list[float] = field(default_factory=list)
    wrong_key_detections: int = 0
    wrong_key_trials: int = 0


def payload_for(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()[:8]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- detection with access to the detector (for bit accuracy and null diagnostics) -----------------------------
def detect_with(method, frames: Iterable[Frame], width: int, height: int, fps: float):  # type: ignore[no-untyped-def]
    detector = method.detector(width, height, fps)
    for index, frame in enumerate(frames):
        if detector.wants(index):
            detector.add(frame, index)
    return detector.result(), detector


def detect_path(method, path: Path):  # type: ignore[no-untyped-def]
    info = probe(path)
    return detect_with(method, read_frames(path), info.width & ~1, info.height & ~1, info.fps or 25.0)


def bit_accuracy(method, detector, payload: bytes) -> float:  # type: ignore[no-untyped-def]
    if isinstance(method, ImwatermarkBaseline):
        if detector.bits is None:
            return 0.5
        return float(np.mean(detector.bits == method.payload_bits(payload)))
    values = detector.diagnostics.get("code_values")
    if values is None:
        return 0.5
    truth = PayloadCode(KEY).encode(payload)
    return float(np.mean(np.sign(values) == truth))  # raw code bits before error correction


# --- quality -----------------------------------------------------------------------------------------------------
def quality(method, clip: Clip, payload: bytes, frames: int = 12) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """Mean luma PSNR and SSIM of marked vs unmarked frames (before encoding), and embed ms per frame."""
    info = probe(clip.path)
    embedder = method.embedder(payload, info.width & ~1, info.height & ~1, info.fps or 25.0)
    psnrs, ssims, elapsed = [], [], 0.0
    for index, frame in enumerate(itertools.islice(read_frames(clip.path), frames)):
        original = frame.y.copy()
        start = time.perf_counter()
        embedder.apply(frame, index)
        elapsed += time.perf_counter() - start
        mse = float(np.mean((frame.y.astype(np.float64) - original) ** 2))
        psnrs.append(10 * math.log10(255**2 / max(mse, 1e-10)))
        ssims.append(float(structural_similarity(original, frame.y, data_range=255)))
    return float(np.mean(psnrs)), float(np.mean(ssims)), 1000 * elapsed / max(1, len(psnrs))


# --- robustness ----------------------------------------------------------------------------------------------------
CACHE = OUT / "watermark-cache.json"


def code_fingerprint() -> str:
    """Results are reused (after a crash or an interruption) only while the code that made them is unchanged."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted([*root.glob("guard/marks/**/*.py"), root / "guard/media.py", root / "bench/attacks.py",
                        root / "bench/baselines.py", root / "bench/corpus.py"]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def load_cache() -> dict:
    try:
        cache = json.loads(CACHE.read_text())
    except (OSError, ValueError):
        return {"code": code_fingerprint()}
    return cache if cache.get("code") == code_fingerprint() else {"code": code_fingerprint()}


def save_cache(cache: dict) -> None:
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    partial = CACHE.with_suffix(".part")
    partial.write_text(json.dumps(cache))
    partial.replace(CACHE)


def run_method(name: str, method, clips: list[Clip], attacks: list[str], stats: MethodStats,  # type: ignore[no-untyped-def]
               wrong=None) -> None:
    work = OUT / "runs" / name
    work.mkdir(parents=True, exist_ok=True)
    cache = load_cache()
    for clip in clips:
        payload = payload_for(clip.name)
        key = f"{name}/{clip.name}"
        entry = cache.get(key) or {}
        if "quality" not in entry:
            entry["quality"] = quality(method, clip, payload)
        psnr, ssim, ms = entry["quality"]
        stats.psnr.append(psnr)
        stats.ssim.append(ssim)
        stats.embed_ms.append(ms)
        marked = work / f"{clip.name}.mp4"
        if any(a not in entry for a in attacks):
            stamp_file(clip.path, marked, method=method, payload=payload)
        for attack in attacks:
            if attack not in entry:
                entry[attack] = _attack_once(method, marked, clip, attack, payload, work, wrong)
            recovered, accuracy, detected, p_value, wrong_detected = entry[attack]
            stats.outcomes[attack].append(Outcome(recovered, accuracy, detected, p_value))
            if wrong_detected is not None:
                stats.wrong_key_trials += 1
                stats.wrong_key_detections += int(wrong_detected)
            cache[key] = entry
            save_cache(cache)
        log(f"  {name} {clip.name}: " + " ".join(
            f"{a}={'ok' if stats.outcomes[a][-1].recovered else 'MISS'}" for a in attacks))


def _attack_once(method, marked: Path, clip: Clip, attack: str, payload: bytes, work: Path,  # type: ignore[no-untyped-def]
                 wrong) -> list:
    attacked = marked if attack == "none" else ATTACKS[attack](marked, work / f"{clip.name}--{attack}")
    try:
        detection, detector = detect_path(method, attacked)
        want = payload[:4] if getattr(method, "bits", 64) == 32 else payload
        got = detection.payload[: len(want)] if detection.payload is not None else None
        wrong_detected = detect_path(wrong, attacked)[0].detected if wrong is not None else None
        return [got == want, bit_accuracy(method, detector, payload), detection.detected, detection.p_value,
                wrong_detected]
    finally:
        if attacked != marked:
            attacked.unlink(missing_ok=True)


# --- false positives -----------------------------------------------------------------------------------------------
def unmarked_excerpts(count: int, seconds: float = 1.0) -> Iterator[tuple[str, list[Frame], float]]:
    """Real excerpts (several offsets, flipped, cropped, downscaled) and synthetic clips, in memory."""
    made = 0
    transforms = {
        "plain": lambda rgb: rgb,
        "flip": lambda rgb: np.ascontiguousarray(rgb[:, ::-1]),
        "crop": lambda rgb: np.ascontiguousarray(rgb[rgb.shape[0] // 16 * 2 : rgb.shape[0] // 16 * 14,
                                                     rgb.shape[1] // 20 * 2 : rgb.shape[1] // 20 * 18]),
        "half": lambda rgb: cv2.resize(rgb, (rgb.shape[1] // 4 * 2, rgb.shape[0] // 4 * 2),
                                       interpolation=cv2.INTER_AREA),
    }
    sources = sorted(p for p in MEDIA.iterdir() if p.suffix in (".mp4", ".mkv", ".gif")) if MEDIA.is_dir() else []
    for source in sources:
        info = probe(source)
        fps = info.fps or 25.0
        length = int(round(seconds * fps))
        total = info.frame_count or 60
        offsets = range(0, max(1, total - length), max(8, length // 2))
        frames_all = [f.to_rgb() for f in read_frames(source)]
        for offset, (tname, op) in itertools.product(list(offsets)[:12], transforms.items()):
            rgb = frames_all[offset : offset + length]
            if not rgb:
                continue
            yield f"real:{source.stem}@{offset}:{tname}", [Frame.from_rgb(op(f)) for f in rgb], fps
            made += 1
            if made >= count:
                return
    seeds = itertools.count(5000)
    while made < count:
        seed = next(seeds)
        kind = ("pan", "zoom", "gradient", "dark", "motion")[seed % 5]
        width, height = ((640, 360), (480, 270), (1280, 720))[seed % 3] if seed % 7 else (1280, 720)
        frames = [Frame.from_rgb(f) for f in synthetic_frames(kind, width, height, int(24 * seconds), seed)]
        yield f"synthetic:{kind}-{width}x{height}-{seed}", frames, 24.0
        made += 1


def presence_z(hypotheses: int) -> float:
    """The pilot z at which a detection without a decoded payload is made: its Bonferroni p reaches THRESHOLD."""
    return float(brentq(lambda z: bonferroni_p(log_rademacher_tail(z), hypotheses) - THRESHOLD, 0.0, 40.0))


def false_positive_study(count: int) -> str:
    method = watermark_method("hallmark", KEY)
    z_fixed, z_max, p_values, detections, names, hypotheses = [], [], [], 0, [], []
    started = time.perf_counter()
    for name, frames, fps in unmarked_excerpts(count):
        detection, detector = detect_with(method, frames, frames[0].width, frames[0].height, fps)
        if not detector.diagnostics:
            continue
        z_fixed.append(float(detector.diagnostics["z_fixed"]))
        z_max.append(float(detector.diagnostics["z_max"]))
        hypotheses.append(int(detector.diagnostics["hypotheses"]))
        p_values.append(float(detection.p_value or 1.0))
        detections += int(detection.detected)
        names.append(name)
    elapsed = time.perf_counter() - started
    z_fixed_a, p_a = np.array(z_fixed), np.array(p_values)
    real = sum(1 for n in names if n.startswith("real"))
    quantiles = [0.5, 0.9, 0.99, 0.999]
    rows = [[f"{q:g}", f"{np.quantile(z_fixed_a, q):.2f}", f"{norm.ppf(q):.2f}"] for q in quantiles]
    rows.append(["max", f"{z_fixed_a.max():.2f}", f"{norm.ppf(1 - 1 / len(z_fixed_a)):.2f} (expected max)"])
    p_rows = [[f"≤ {t:g}", f"{np.mean(p_a <= t):.4f}", f"≤ {t:g}"] for t in (0.5, 0.1, 0.01, 1e-3, 1e-6)]
    return (
        f"{len(names)} unmarked clips and excerpts ({real} from the real footage: 1 s excerpts at several offsets, "
        f"plain, flipped, cropped and downscaled; {len(names) - real} synthetic: pans, zooms, gradients, dark "
        f"scenes and fast motion at 270p-720p), read with the benchmark key in {elapsed:.0f} s: "
        f"**{detections} detections** at the default threshold (p ≤ 1e-6).\n\n"
        "The pilot z-score at one hypothesis fixed in advance (resize lattice, no flip, shift 0) against the "
        "standard normal the bound is built on (Bentkus' bound is c·P(Z ≥ z), c ≈ 3.18, so the empirical tail "
        "must lie at or below the normal's up to that factor):\n\n"
        + markdown_table(["quantile", "unmarked z (fixed hypothesis)", "N(0,1)"], rows)
        + "\n\nReported p-values (the max over all hypotheses, Bonferroni-corrected) must be conservative: the "
        "fraction of unmarked clips at or below each level may not exceed the level.\n\n"
        + markdown_table(["p-value", "fraction of unmarked clips", "allowed"], p_rows)
        + f"\n\nLargest pilot z over all hypotheses on unmarked content: {max(z_max):.2f} "
        f"(a detection without a decoded payload would need about {presence_z(max(hypotheses)):.1f})."
    )


# --- speed and memory ----------------------------------------------------------------------------------------------
def timed(function, repeat: int = 2) -> float:  # type: ignore[no-untyped-def]
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def speed_section(directory: Path, quick: bool) -> tuple[str, dict[str, float]]:
    directory.mkdir(parents=True, exist_ok=True)
    seconds = 10
    source = directory / f"speed-720p-{seconds}s.mp4"
    if not source.exists():
        write_clip(synthetic_frames("pan", 1280, 720, 30 * seconds, 424242), source, fps=30.0)
    method = watermark_method("hallmark", KEY)
    payload = payload_for("speed")
    frames = [f for f in itertools.islice(read_frames(source), 60)]
    cv2.setNumThreads(1)  # one core for the per-frame costs
    try:
        embedder = method.embedder(payload, 1280, 720, 30.0)
        work = [Frame(f.buffer.copy()) for f in frames]
        embed_ms = 1000 * timed(lambda: [embedder.apply(f, i) for i, f in enumerate(work)]) / len(work)
        visible = VisibleMark("AI-generated · Hallmark · 1a2b3c4d", 1280, 720, 30.0)
        visible_ms = 1000 * timed(lambda: [visible.apply(f, i) for i, f in enumerate(work)]) / len(work)
    finally:
        cv2.setNumThreads(-1)

    def stamping_cost(clip: Path, stem: str) -> tuple[float, float, float]:
        """(stamping s, plain decode + encode s, stamped size / plain size) for one clip."""

        def plain() -> None:
            # The same pipeline without the marks, so the ratio is what the marks cost: same decoder, encoder
            # settings and muxing, audio copied as stamping copies it (a baseline without the audio track did
            # less work than stamping, beyond the marks, and wrote a smaller file).
            stamp_file(clip, directory / f"{stem}-plain.mp4", method=None, payload=None)

        def stamped() -> None:
            stamp_file(clip, directory / f"{stem}-stamped.mp4", method=method, payload=payload,
                       visible_label="AI-generated · Hallmark · 1a2b3c4d")

        plain_s, stamp_s = math.inf, math.inf
        # Alternate, so both see the same machine load, and keep each one's best of three: on a shared machine
        # the ratio of single runs moved between 1.15x and 1.22x on car-detection.mp4 from run to run.
        for _ in range(3):
            plain_s = min(plain_s, timed(plain, 1))
            stamp_s = min(stamp_s, timed(stamped, 1))
        size = (directory / f"{stem}-stamped.mp4").stat().st_size / (directory / f"{stem}-plain.mp4").stat().st_size
        return stamp_s, plain_s, size

    stamp_s, plain_s, pan_size = stamping_cost(source, "pan")
    # The synthetic pan is an upscaled photograph, far smoother than camera footage, so the mark's fine texture
    # is most of what x264 has to code there; real footage (car-detection.mp4, 30 s at 768x432) shows the usual case.
    real = MEDIA / "car-detection.mp4"
    real_cost = stamping_cost(real, "real") if real.is_file() else None
    (directory / "stamped.mp4").unlink(missing_ok=True)
    (directory / "pan-stamped.mp4").replace(directory / "stamped.mp4")
    detect_s = timed(lambda: detect_path(method, directory / "stamped.mp4"), 2)
    decode_s = timed(lambda: sum(1 for _ in read_frames(directory / "stamped.mp4")), 2)
    count = 30 * seconds
    rows = [
        ["invisible mark, embed per 720p frame (1 core)", f"{embed_ms:.1f} ms", "≤ 10 ms", _met(embed_ms <= 10)],
        ["visible mark per 720p frame (1 core)", f"{visible_ms:.2f} ms", "≤ 2 ms", _met(visible_ms <= 2)],
        [f"stamping {seconds} s of 720p (decode + both marks + x264 CRF 18 medium)", f"{stamp_s:.2f} s", "", ""],
        ["plain decode + encode: the same pipeline and encoder settings, no marks", f"{plain_s:.2f} s", "", ""],
        ["stamping / plain", f"{stamp_s / plain_s:.2f}x", "≤ 1.2x", _met(stamp_s / plain_s <= 1.2)],
        ["stamped file size / plain file size (synthetic pan)", f"{pan_size:.2f}x", "", ""],
    ]
    if real_cost is not None:
        real_stamp, real_plain, real_size = real_cost
        rows += [
            ["stamping / plain, real footage (car-detection.mp4, 30 s 768x432)",
             f"{real_stamp:.2f} s / {real_plain:.2f} s = {real_stamp / real_plain:.2f}x", "≤ 1.2x",
             _met(real_stamp / real_plain <= 1.2)],
            ["stamped file size / plain file size (real footage)", f"{real_size:.2f}x", "", ""],
        ]
    rows += [
        [f"detection, {seconds} s 720p clip ({count} frames, 2 cores)", f"{detect_s:.2f} s",
         "≤ 3 s for 10 s" if seconds == 10 else "(10 s clip in the full run)",
         _met(detect_s <= 3) if seconds == 10 else ""],
        ["of which: decoding the clip alone", f"{decode_s:.2f} s", "", ""],
    ]
    return markdown_table(["measure", "value", "target", "met"], rows), {"embed_ms": embed_ms}


def _met(ok: bool) -> str:
    return "yes" if ok else "**MISSED**"


MEMORY_CHILD = """
import sys, time
from pathlib import Path
from guard.marks import watermark_method
from guard.marks.apply import stamp_file, detect_file
key = bytes.fromhex(sys.argv[3])
method = watermark_method("hallmark", key)
start = time.perf_counter()
if sys.argv[1] == "stamp":
    stamp_file(Path(sys.argv[2]), Path(sys.argv[2] + ".stamped.mp4"), method=method, payload=bytes(8),
               visible_label="AI-generated", preset="ultrafast")
else:
    assert detect_file(Path(sys.argv[2]), method).payload == bytes(8)
# VmHWM, not ru_maxrss: the latter survives exec and would report the parent's size at fork time
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM"))
print(peak / 1024, time.perf_counter() - start)
"""


def memory_section(directory: Path, minutes: list[float]) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    rows = []
    for length in minutes:
        source = directory / f"memory-720p-{length:g}min.mp4"
        if not source.exists():
            frames = synthetic_frames("pan", 1280, 720, int(length * 60 * 30), 777)
            encode((Frame.from_rgb(f) for f in frames), source, 30.0, crf=23, preset="ultrafast")
        for step in ("stamp", "detect"):
            target = str(source) if step == "stamp" else str(source) + ".stamped.mp4"
            done = subprocess.run([sys.executable, "-c", MEMORY_CHILD, step, target, KEY.hex()],
                                  capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent,
                                  check=True)
            peak, seconds = done.stdout.split()
            rows.append([f"{length:g} min 720p ({int(length * 1800)} frames)", step, f"{float(peak):.0f} MiB",
                         f"{float(seconds):.0f} s"])
    return markdown_table(["clip", "step", "peak RSS", "time"], rows)


# --- the picture ---------------------------------------------------------------------------------------------------
def side_by_side_png(path: Path) -> Path:
    rgb = next(iter(synthetic_frames("pan", 1280, 720, 1, 3)))
    frame = Frame.from_rgb(rgb)
    original = frame.y.copy()
    watermark_method("hallmark", KEY).embedder(payload_for("png"), 1280, 720, 30.0).apply(frame, 0)
    y0, x0, size = 200, 500, 256
    a = original[y0 : y0 + size, x0 : x0 + size]
    b = frame.y[y0 : y0 + size, x0 : x0 + size]
    diff = np.clip(128 + 20 * (b.astype(np.int16) - a), 0, 255).astype(np.uint8)
    gap = np.full((size, 8), 255, np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.hstack([a, gap, b, gap, diff]))
    return path


# --- the report ----------------------------------------------------------------------------------------------------
def _label_and_target(attack: str) -> tuple[str, float]:
    """An attack's row label and target recovery rate ("none" is the marked clip as released)."""
    if attack in ATTACKS:
        return ATTACKS[attack].label, ATTACKS[attack].target
    return "none (marked clip as released, CRF 18)", 0.99


def _rate(outcomes: list[Outcome]) -> float:
    """Exact payload recovery rate (0 when nothing was read)."""
    return float(np.mean([o.recovered for o in outcomes])) if outcomes else 0.0


def cell(outcomes: list[Outcome]) -> str:
    if not outcomes:
        return "–"
    rate = _rate(outcomes)
    accuracy = np.mean([o.bit_accuracy for o in outcomes])
    return f"{100 * rate:.0f} % · {accuracy:.2f} (n={len(outcomes)})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few clips, a few minutes")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print, do not write BENCHMARKS.md")
    parser.add_argument("--max-clips", type=int, default=None, help="use only the first N corpus clips")
    parser.add_argument("--attacks", default=None, help="comma-separated subset of attacks")
    parser.add_argument("--fp-clips", type=int, default=None, help="unmarked clips in the false-positive study")
    parser.add_argument("--memory-only", action="store_true",
                        help="only run the memory measurement (5-minute 720p clip) and keep its table for the "
                        "next full or quick run")
    parser.add_argument("--speed-only", action="store_true",
                        help="only run the speed measurement and print its table (to measure it again when the "
                        "full run's speed pass met outside load)")
    args = parser.parse_args(argv)
    if args.speed_only:
        print(speed_section(OUT / "speed", args.quick)[0])
        return
    memory_table = OUT / "memory.md"
    if args.memory_only:
        memory_table.parent.mkdir(parents=True, exist_ok=True)
        memory_table.write_text(memory_section(OUT / "memory", [0.5, 5.0]) + "\n\n_(measured "
                                + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()) + ")_\n")
        print(memory_table.read_text())
        return
    quick = args.quick
    started = time.perf_counter()
    log("building the corpus")
    clips = build(quick=quick)[: args.max_clips]
    attacks = ["none", *(args.attacks.split(",") if args.attacks else ATTACKS)]
    methods: dict[str, tuple[object, list[Clip], list[str]]] = {}
    small = [c for c in clips if _pixels(c) <= BASELINE_MAX_PIXELS]
    baseline_clips = small[:2] if quick else small[:16]
    riva_clips = small[:1] if quick else small[:2]
    riva_attacks = [a for a in ("none", "h264_crf28", "scale_50", "crop_70") if a in attacks]
    methods["Hallmark"] = (watermark_method("hallmark", KEY), clips, attacks)
    for algorithm in ("dwtDct", "dwtDctSvd"):
        methods[algorithm] = (ImwatermarkBaseline(algorithm, KEY), baseline_clips, attacks)
    methods["rivaGan"] = (ImwatermarkBaseline("rivaGan", KEY), [_short(c, 24) for c in riva_clips], riva_attacks)
    stats = {name: MethodStats() for name in methods}
    for name, (method, method_clips, method_attacks) in methods.items():
        log(f"robustness: {name} on {len(method_clips)} clips x {len(method_attacks)} attacks")
        wrong = watermark_method("hallmark", WRONG_KEY) if name == "Hallmark" else None
        run_method(name, method, method_clips, method_attacks, stats[name], wrong)

    small_clips = small_frames()
    log(f"robustness: Hallmark below 360p on {len(small_clips)} clips x {len(attacks)} attacks")
    small_stats = MethodStats()
    run_method("Hallmark-small", watermark_method("hallmark", KEY), small_clips, attacks, small_stats)

    log("false positives")
    fp_text = false_positive_study(args.fp_clips or (120 if quick else 520))
    log("speed")
    speed_text, _ = speed_section(OUT / "speed", quick)
    memory_text = ""
    if memory_table.exists():
        memory_text = memory_table.read_text()  # from `--memory-only` (a 5-minute clip takes a while)
    elif not args.skip_memory:
        log("memory")
        memory_text = memory_section(OUT / "memory", [0.5, 5.0])  # the issue asks for 5 minutes, quick or not
    png = side_by_side_png(RESULTS / "watermark-crop.png")

    names = list(methods)
    header = ["attack", "target", *[f"{n}" for n in names], "Hallmark meets target"]
    rows = []
    for attack in attacks:
        label, target = _label_and_target(attack)
        rows.append([label, f"≥ {100 * target:.0f} %", *[cell(stats[n].outcomes[attack]) for n in names],
                     _met(_rate(stats["Hallmark"].outcomes[attack]) >= target)])
    quality_rows = [[n, f"{np.mean(stats[n].psnr):.1f} dB (min {np.min(stats[n].psnr):.1f})",
                     f"{np.mean(stats[n].ssim):.4f} (min {np.min(stats[n].ssim):.4f})",
                     f"{np.median(stats[n].embed_ms):.1f}", len(stats[n].psnr)] for n in names if stats[n].psnr]
    hallmark_stats = stats["Hallmark"]
    per_kind = _per_kind(clips, hallmark_stats)
    small_rows = []
    for attack in attacks:
        label, target = _label_and_target(attack)
        outcomes = small_stats.outcomes[attack]
        small_rows.append([label, f"≥ {100 * target:.0f} %", cell(outcomes), _met(_rate(outcomes) >= target)])
    body = f"""
Corpus: {len(clips)} clips of 3 s ({sum(c.kind == 'real' for c in clips)} real clips from ../shared/media at their
own sizes, the rest synthetic: pans, zooms, flat gradients, dark scenes and fast motion over scikit-image's natural
images at 360p, 720p and 1080p). Hallmark runs on every clip; dwtDct and dwtDctSvd on the {len(baseline_clips)}
clips up to 640x480 (their embedding costs 70-300 ms per frame); rivaGan (≈2 s per frame) on
{len(riva_clips)} clip(s), 1 s each, under {', '.join(riva_attacks[1:])} only. Each clip is marked with a 64-bit
payload (rivaGan: 32 bits), encoded as the gateway does (H.264 CRF 18 medium), attacked, and read back.

Cells: exact payload recovery rate · bit accuracy (Hallmark: raw code bits before error correction at the strongest
hypothesis; baselines: voted payload bits) and the number of clips. Picture attacks are re-encoded at H.264 CRF 18
(preset fast); "downscale to 360p" leaves clips of 360p and smaller unchanged.

{markdown_table(header, rows)}

Hallmark by kind of clip (exact payload recovery over all attacks):

{per_kind}

Wrong key: {hallmark_stats.wrong_key_detections} detections in {hallmark_stats.wrong_key_trials} reads of marked
and attacked clips with another operator's key.

Below 360p (not part of the corpus above): one synthetic clip of each kind at 480x270 and at 320x180, under the
same attacks. Frames this small hold the fewest tiles, so the mark is weakest here; the targets are the corpus's,
shown for comparison.

{markdown_table(["attack", "target", "Hallmark below 360p", "meets target"], small_rows)}

Quality of these clips: PSNR {np.mean(small_stats.psnr):.1f} dB (min {np.min(small_stats.psnr):.1f}), SSIM
{np.mean(small_stats.ssim):.4f} (min {np.min(small_stats.ssim):.4f}).

### Quality (luma, marked vs unmarked frames before encoding; targets PSNR ≥ 42 dB, SSIM ≥ 0.99)

{markdown_table(["method", "PSNR", "SSIM", "embed ms/frame (median)", "clips"], quality_rows)}

Side by side (720p crop, 256x256: unmarked | marked | difference x20 around grey):
![unmarked, marked, 20x difference](bench/results/{png.name})

### Speed

{speed_text}

### Memory (streaming: peak RSS of a separate process; stamping here uses x264 `ultrafast` to keep the run short)

{memory_text or "(skipped)"}

### False positives

{fp_text}

Total benchmark time: {(time.perf_counter() - started) / 60:.0f} min{' (quick mode)' if quick else ''}.
"""
    print(body)
    if not args.no_write:
        command = " ".join(["python -m bench.watermark", *(argv if argv is not None else sys.argv[1:])])
        write_section("watermark", "Invisible watermark", command, body)


def _pixels(clip: Clip) -> int:
    info = probe(clip.path)
    return info.width * info.height


def _short(clip: Clip, frames: int) -> Clip:
    path = clip.path.with_name(f"{clip.path.stem}-first{frames}.mp4")
    if not path.exists():
        info = probe(clip.path)
        encode(itertools.islice(read_frames(clip.path), frames), path, info.fps or 25.0, crf=10, preset="veryfast")
    return Clip(clip.name + f"-first{frames}", clip.kind, clip.resolution, path)


def _per_kind(clips: list[Clip], stats: MethodStats) -> str:
    by_clip: dict[str, list[bool]] = defaultdict(list)
    order = [c.name for c in clips]
    for outcomes in stats.outcomes.values():
        for clip_name, outcome in zip(order, outcomes):
            by_clip[clip_name].append(outcome.recovered)
    groups: dict[str, list[bool]] = defaultdict(list)
    for clip in clips:
        key = "real footage" if clip.kind == "real" else f"{clip.kind} {clip.resolution}"
        groups[key].extend(by_clip[clip.name])
    rows = [[k, f"{100 * np.mean(v):.0f} %", len(v)] for k, v in sorted(groups.items())]
    return markdown_table(["clips", "recovered", "reads"], rows)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
