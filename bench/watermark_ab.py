"""Side-by-side A/B of a change to the watermark's tunable constants, on the full corpus (48 clips).

    python -m bench.watermark_ab --set guard.marks.tiled.embed.SSIM_LOSS=0.009
    python -m bench.watermark_ab --set guard.marks.tiled.detect.SAMPLES_PER_SECOND=30 --attacks h264_crf33

Each arm (the code as it is, then the code with the `--set` values) marks every clip, applies the attacks, detects,
and measures quality on the marked frames. The report lists per attack how many clips each arm read, which reads
the variant gained and lost, and any wrong payload (there must be none), then each arm's mean PSNR and SSIM. This
is how a tuning is judged before it lands: pass rates on the quick benchmark's 7 clips move in steps of 14 % and
hide trade-offs; this sees 48 clips and both sides of every change.

`--set MODULE.NAME=VALUE` replaces a module-level constant (VALUE is a Python literal) in the worker processes.
Only code that reads the constant through its module sees it: a name another module imported by value keeps its
old value (set it in that module too).

The attacked files are deleted as soon as they have been read; nothing is cached between runs, so both arms always
measure the code as it stands. With two workers the default (3 attacks) takes about 10 minutes per arm on 2 cores.

`--detector-only` is for constants only the detector reads: each clip is marked and attacked once and both arms
read the very same attacked files, which halves the run and keeps the encoders' run-to-run noise out of the
comparison. It takes constants of the detector module only (`DETECTOR_MODULES`): marking would ignore any other.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

from bench.attacks import ATTACKS
from bench.corpus import Clip, build
from bench.report import markdown_table
from bench.watermark import KEY, detect_path, log, payload_for, quality
from guard.marks import watermark_method
from guard.marks.apply import stamp_file

DEFAULT_ATTACKS = ("h264_crf33", "h265_crf28", "combo")  # the attacks still under their targets
Setting = tuple[str, str, object]  # module, constant, value
DETECTOR_MODULES = ("guard.marks.tiled.detect",)  # read by detection only (for --detector-only)


@dataclass(frozen=True)
class Read:
    recovered: bool
    wrong: bool  # a payload other than the one embedded (must never happen)


@dataclass(frozen=True)
class ClipResult:
    name: str
    reads: dict[str, Read]
    psnr: float
    ssim: float


def parse_setting(text: str) -> Setting:
    """`package.module.NAME=literal` → (module, name, value), refusing names the module does not have."""
    target, sep, literal = text.partition("=")
    module, _, name = target.rpartition(".")
    if not sep or not module or not name:
        raise SystemExit(f"error: --set wants MODULE.NAME=VALUE, got {text!r}")
    try:
        value = ast.literal_eval(literal)
    except (ValueError, SyntaxError):
        raise SystemExit(f"error: --set {target}: {literal!r} is not a Python literal") from None
    try:
        loaded = importlib.import_module(module)
    except ImportError:
        raise SystemExit(f"error: --set {target}: there is no module {module}") from None
    if not hasattr(loaded, name):
        raise SystemExit(f"error: --set {target}: {module} has no constant {name}")
    return module, name, value


def _apply(settings: list[Setting]) -> None:
    for module, name, value in settings:
        setattr(importlib.import_module(module), name, value)


@contextmanager
def _applied(settings: list[Setting]) -> Iterator[None]:
    """The settings in force inside the block, the previous values restored after it."""
    previous = [(module, name, getattr(importlib.import_module(module), name)) for module, name, _ in settings]
    _apply(settings)
    try:
        yield
    finally:
        _apply(previous)


def _run_clip(task: tuple[Clip, list[str], Path, list[list[Setting]]]) -> list[ClipResult]:
    """Mark one clip, attack it, and read each attacked file once per detector arm (one result per arm)."""
    clip, attacks, work, detectors = task
    method = watermark_method("hallmark", KEY)
    payload = payload_for(clip.name)
    marked = work / f"{clip.name}.mp4"
    stamp_file(clip.path, marked, method=method, payload=payload)
    reads: list[dict[str, Read]] = [{} for _ in detectors]
    for attack in attacks:
        attacked = ATTACKS[attack](marked, work / f"{clip.name}--{attack}")
        try:
            for arm, settings in enumerate(detectors):
                with _applied(settings):
                    detection, _ = detect_path(method, attacked)
                reads[arm][attack] = Read(detection.payload == payload,
                                          detection.payload is not None and detection.payload != payload)
        finally:
            attacked.unlink(missing_ok=True)
    marked.unlink(missing_ok=True)
    psnr, ssim, _ = quality(method, clip, payload)
    return [ClipResult(clip.name, arm_reads, psnr, ssim) for arm_reads in reads]


def run_arms(settings: list[Setting], detectors: list[list[Setting]], clips: list[Clip], attacks: list[str],
             workers: int) -> list[dict[str, ClipResult]]:
    """Every clip marked and attacked with `settings` in force, then read by each of `detectors` (one result set
    per detector arm)."""
    with tempfile.TemporaryDirectory(prefix="hallmark-ab-") as work, \
            Pool(workers, initializer=_apply, initargs=(settings,)) as pool:
        arms: list[dict[str, ClipResult]] = [{} for _ in detectors]
        for results in pool.imap_unordered(_run_clip, [(clip, attacks, Path(work), detectors) for clip in clips]):
            log(f"  {results[0].name}: " + " | ".join(" ".join(f"{a}={'ok' if r.recovered else 'MISS'}"
                                                               for a, r in result.reads.items())
                                                      for result in results))
            for arm, result in zip(arms, results):
                arm[result.name] = result
        return arms


def report(base: dict[str, ClipResult], variant: dict[str, ClipResult], attacks: list[str]) -> str:
    rows = []
    for attack in attacks:
        gained = sorted(n for n in base if variant[n].reads[attack].recovered and not base[n].reads[attack].recovered)
        lost = sorted(n for n in base if base[n].reads[attack].recovered and not variant[n].reads[attack].recovered)
        wrong = sum(r.reads[attack].wrong for arm in (base, variant) for r in arm.values())
        rows.append([ATTACKS[attack].label,
                     f"{sum(r.reads[attack].recovered for r in base.values())} / {len(base)}",
                     f"{sum(r.reads[attack].recovered for r in variant.values())} / {len(variant)}",
                     ", ".join(gained) or "—", ", ".join(lost) or "—", wrong])
    table = markdown_table(["attack", "as is", "variant", "gained", "lost", "wrong payloads"], rows)

    def mean(arm: dict[str, ClipResult], field: str) -> float:
        return sum(getattr(r, field) for r in arm.values()) / len(arm)

    def worst(arm: dict[str, ClipResult], field: str) -> float:
        return min(getattr(r, field) for r in arm.values())

    quality_rows = [[name, f"{mean(arm, 'psnr'):.2f} (min {worst(arm, 'psnr'):.2f})",
                     f"{mean(arm, 'ssim'):.4f} (min {worst(arm, 'ssim'):.4f})"]
                    for name, arm in (("as is", base), ("variant", variant))]
    return table + "\n\n" + markdown_table(["arm", "PSNR dB (mean, min clip)", "SSIM (mean, min clip)"],
                                           quality_rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", action="append", default=[], metavar="MODULE.NAME=VALUE", dest="settings",
                        help="a constant the variant arm replaces (repeatable)")
    parser.add_argument("--attacks", default=",".join(DEFAULT_ATTACKS), help="comma-separated attack names")
    parser.add_argument("--quick", action="store_true", help="the quick benchmark's 7 clips instead of 48")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--detector-only", action="store_true",
                        help="the settings change only detection: both arms read the same attacked files")
    args = parser.parse_args(argv)
    if not args.settings:
        raise SystemExit("error: nothing to compare: give at least one --set MODULE.NAME=VALUE")
    settings = [parse_setting(text) for text in args.settings]
    if args.detector_only and any(module not in DETECTOR_MODULES for module, _, _ in settings):
        raise SystemExit(f"error: --detector-only takes constants of {', '.join(DETECTOR_MODULES)} only: "
                         "the clips are marked once, with the code as it is")
    attacks = args.attacks.split(",")
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise SystemExit(f"error: unknown attack(s) {', '.join(unknown)}; known: {', '.join(ATTACKS)}")
    clips = build(quick=args.quick)
    if args.detector_only:
        log(f"as is | variant ({', '.join(args.settings)}), on the same files: {len(clips)} clips x "
            f"{len(attacks)} attacks")
        base, variant = run_arms([], [[], settings], clips, attacks, args.workers)
    else:
        log(f"as is: {len(clips)} clips x {len(attacks)} attacks")
        (base,) = run_arms([], [[]], clips, attacks, args.workers)
        log("variant: " + ", ".join(args.settings))
        (variant,) = run_arms(settings, [[]], clips, attacks, args.workers)
    print(f"Variant: {', '.join(f'`{s}`' for s in args.settings)}\n")
    print(report(base, variant, attacks))


if __name__ == "__main__":
    main()
