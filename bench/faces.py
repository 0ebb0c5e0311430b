"""Face benchmark: match rates on real faces at the chosen threshold, liveness rejections, face search time at
100,000 enrolled templates, per-frame analysis time. Writes the `faces` section of BENCHMARKS.md.

    python -m bench.faces [--templates 100000] [--no-write]

Corpus (real faces only): the ten asl-*.mkv clips of ../shared/media (five signers; who is who was established by
looking at the frames: one man signs again/brother/help, another bird/milk, a woman book/learn, a third man
eat/night, a fourth man hungry), head-pose-female.gif (one woman turning her head), and two sample portraits that
ship with installed packages (scikit-image's astronaut, matplotlib's grace_hopper.jpg). Eight people in all.

Protocol, as the product uses faces: a clip is *enrolled* the way an operator enrolls a video (analyze_video ->
the mean of up to 10 clear frames spread over the clip); a *probe* is one sampled frame (every 2nd frame) of
another clip, as the output check sees one sampled frame. Genuine pairs: a template against frames of a different
clip of the same person; impostor pairs: against frames and portraits of other people."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MEDIA = (ROOT.parent / "shared" / "media").resolve()
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # face_clips: the same challenge clips the tests build

from bench.report import markdown_table, write_section  # noqa: E402
from guard.likeness.analysis import analyze, detect, embed  # noqa: E402
from guard.likeness.index import Entry, FaceIndex  # noqa: E402
from guard.likeness.models import face_models  # noqa: E402
from guard.likeness.registration import check_video, template_of  # noqa: E402
from guard.likeness.service import DEFAULT_THRESHOLD  # noqa: E402
from guard.likeness.video import RECOGNISABLE_SCORE, analyze_video  # noqa: E402

PEOPLE = {
    "asl-again": "man 1", "asl-brother": "man 1", "asl-help": "man 1",
    "asl-bird": "man 2", "asl-milk": "man 2",
    "asl-book": "woman 1", "asl-learn": "woman 1",
    "asl-eat": "man 3", "asl-night": "man 3",
    "asl-hungry": "man 4",
    "head-pose-female": "woman 2",
    "astronaut": "woman 3", "grace_hopper": "woman 4",
}
SWEEP = [0.93, 0.94, 0.95, 0.955, 0.96, 0.965, 0.97]


def portraits() -> dict[str, np.ndarray]:
    import matplotlib.cbook
    import skimage.data
    from PIL import Image

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as image:
        hopper = np.asarray(image.convert("RGB"))
    return {"astronaut": skimage.data.astronaut(), "grace_hopper": hopper}


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


# --- 1. match rates --------------------------------------------------------------------------------------------
def collect(media: Path) -> tuple[dict[str, np.ndarray], dict[str, list[tuple[np.ndarray, float]]]]:
    """Enrollment templates per clip/portrait, and probes per clip/portrait: (embedding, detector score)."""
    templates: dict[str, np.ndarray] = {}
    probes: dict[str, list[tuple[np.ndarray, float]]] = {}
    clips = sorted(media.glob("asl-*.mkv")) + [media / "head-pose-female.gif"]
    for clip in clips:
        templates[clip.stem] = template_of(analyze_video(clip, max_seconds=20).embeddings)
        rows = []
        for frame in decode(clip)[::2]:
            faces = analyze(frame)
            if faces:
                rows.append((faces[0].embedding, faces[0].score))
        probes[clip.stem] = rows
        print(f"  {clip.name}: {len(rows)} probe frames", file=sys.stderr)
    for name, rgb in portraits().items():
        face = analyze(rgb)[0]
        templates[name] = face.embedding
        probes[name] = [(face.embedding, face.score)]
    return templates, probes


def pair_scores(templates, probes, min_score: float):  # type: ignore[no-untyped-def]
    genuine, impostor = [], []
    clip_genuine, clip_impostor = [], []  # best frame per (template, other clip): the output check's "any frame"
    for enrolled, template in templates.items():
        for probed, rows in probes.items():
            if probed == enrolled:
                continue
            scores = [float(vector @ template) for vector, score in rows if score >= min_score]
            if not scores:
                continue
            same = PEOPLE[enrolled] == PEOPLE[probed]
            (genuine if same else impostor).extend(scores)
            (clip_genuine if same else clip_impostor).append(max(scores))
    return np.array(genuine), np.array(impostor), np.array(clip_genuine), np.array(clip_impostor)


def rates_section(templates, probes) -> tuple[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    genuine, impostor, clip_genuine, clip_impostor = pair_scores(templates, probes, RECOGNISABLE_SCORE)
    all_genuine, all_impostor, _, _ = pair_scores(templates, probes, -10.0)
    t = DEFAULT_THRESHOLD
    rows = []
    for threshold in SWEEP:
        rows.append([f"{threshold:.3f}" + (" (chosen)" if threshold == t else ""),
                     f"{(genuine >= threshold).mean():.2%}", f"{(impostor >= threshold).mean():.3%}",
                     f"{(all_genuine >= threshold).mean():.2%}", f"{(all_impostor >= threshold).mean():.3%}",
                     f"{(clip_genuine >= threshold).mean():.0%}", f"{(clip_impostor >= threshold).mean():.1%}"])
    # dlib's usual rule is Euclidean distance < 0.6 on raw descriptors; their norms here are ~1.45, so on unit
    # vectors it is about cosine 1 - (0.6 / 1.45)^2 / 2 = 0.914.
    dlib_rule = 1 - (0.6 / 1.45) ** 2 / 2
    rows.append([f"{dlib_rule:.3f} (dlib's 0.6 rule)", f"{(genuine >= dlib_rule).mean():.2%}",
                 f"{(impostor >= dlib_rule).mean():.3%}", f"{(all_genuine >= dlib_rule).mean():.2%}",
                 f"{(all_impostor >= dlib_rule).mean():.3%}", f"{(clip_genuine >= dlib_rule).mean():.0%}",
                 f"{(clip_impostor >= dlib_rule).mean():.1%}"])
    table = markdown_table(
        ["threshold (cosine)", "true-match rate", "false-match rate", "TMR, all detections",
         "FMR, all detections", "clip-level TMR", "clip-level FMR"], rows)
    numbers = {"tmr": float((genuine >= t).mean()), "fmr": float((impostor >= t).mean()),
               "genuine_min": float(genuine.min()), "impostor_max": float(impostor.max())}
    text = (
        f"Pairs at the recognisable-face gate (detector score >= {RECOGNISABLE_SCORE}): {len(genuine)} genuine "
        f"(template vs a frame of another clip of the same person), {len(impostor)} impostor; with every "
        f"detection: {len(all_genuine)} / {len(all_impostor)}. Clip level = the best frame of a clip against a "
        f"template ({len(clip_genuine)} genuine, {len(clip_impostor)} impostor clip pairs).\n\n{table}\n\n"
        f"Lowest genuine similarity {genuine.min():.3f}, highest impostor {impostor.max():.3f} (recognisable "
        f"faces); with every detection {all_genuine.min():.3f} / {all_impostor.max():.3f}: the genuine misses "
        "are frames where a signing hand covers the face.")
    return text, numbers


# --- 2. liveness ------------------------------------------------------------------------------------------------
def liveness_section(media: Path, work: Path) -> str:
    import skimage.data
    from PIL import Image

    from face_clips import challenge_clip, no_face_clip, still_clip, two_face_clip

    challenge = ["turn_left", "turn_right", "turn_left"]
    reverse = ["turn_right", "turn_left", "turn_right"]
    Image.fromarray(skimage.data.astronaut()).save(work / "photo.png")
    cases = [
        ("real face, answers the challenge", challenge_clip(media, challenge, work / "answer.mp4")),
        ("real face, reverse order", challenge_clip(media, reverse, work / "reverse.mp4")),
        ("a photo made into a 3 s video", still_clip(skimage.data.astronaut(), work / "still.mp4")),
        ("a photo uploaded as the video", work / "photo.png"),
        ("two people side by side", two_face_clip(media, challenge, work / "two.mp4")),
        ("nobody in the picture", no_face_clip(media, work / "empty.mp4")),
    ]
    rows = []
    for label, path in cases:
        started = time.perf_counter()
        verdict = check_video(analyze_video(path, max_seconds=20), challenge=challenge,
                              threshold=DEFAULT_THRESHOLD, max_seconds=20)
        seconds = time.perf_counter() - started
        observed = verdict.summary.get("observed_moves")
        rows.append([label, "accepted" if verdict.passed else "rejected",
                     ", ".join(f.code for f in verdict.failures) or "-",
                     " > ".join(m.replace("turn_", "") for m in observed) if observed else "-",
                     verdict.summary.get("one_face_ratio", "-"), verdict.summary.get("motion", "-"),
                     f"{seconds:.1f} s"])
    return (f"Challenge: {' > '.join(m.replace('turn_', '') for m in challenge)} (head-pose-female.gif frame "
            "ranges played in that order; the reverse order played for the wrong answer).\n\n"
            + markdown_table(["upload", "verdict", "reasons", "moves seen", "one-face ratio", "max motion",
                              "analysis time"], rows))


# --- 3. search at scale -----------------------------------------------------------------------------------------
def _median_ms(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def search_section(templates: dict[str, np.ndarray], count: int) -> tuple[str, dict[str, float]]:
    """`count` enrolled templates: the real ones planted among random unit vectors (search time does not depend
    on the values; exactness is checked on the planted ones)."""
    from registry import Database, FaceTemplate, FaceTemplates, SubjectKind
    from guard.likeness.sealing import TemplateSealer
    from guard.likeness.service import Likeness, subject_ref

    rng = np.random.default_rng(2026)
    filler = rng.standard_normal((count - len(templates), 128)).astype(np.float32)
    filler /= np.linalg.norm(filler, axis=1, keepdims=True)
    real = np.stack(list(templates.values()))
    matrix = np.concatenate([real, filler])
    names = list(templates) + [f"synthetic-{i}" for i in range(len(filler))]
    index = FaceIndex()
    index.apply(set(), [Entry(seq, "cameo", names[seq], matrix[seq]) for seq in range(count)])
    query = real[names.index("asl-again")]
    probe = query + 0.01 * rng.standard_normal(128).astype(np.float32)
    probe /= np.linalg.norm(probe)

    top = index.search(probe, k=5)[0]
    assert names[top[0].seq] in ("asl-again",), "exact search must find the planted template first"

    def python_loop() -> list[tuple[float, int]]:  # the naive baseline: one dot product per template
        best = []
        for seq in range(count):
            similarity = float(np.dot(matrix[seq], probe))
            if similarity >= DEFAULT_THRESHOLD:
                best.append((similarity, seq))
        return sorted(best, reverse=True)

    indexed_ms = _median_ms(lambda: index.search_above(probe, DEFAULT_THRESHOLD), 30)
    topk_ms = _median_ms(lambda: index.search(probe, k=5), 30)
    unblocked_ms = _median_ms(lambda: probe.reshape(1, -1) @ matrix.T, 30)
    loop_ms = _median_ms(python_loop, 3)
    assert [seq for _, seq in python_loop()] == [hit.seq for hit in index.search_above(probe, DEFAULT_THRESHOLD)[0]]

    # The whole path a process takes: sealed rows in a database -> decrypted into the index (cold start), then
    # the refresh after one more enrolment (incremental), then the per-check version probe (no change).
    with tempfile.TemporaryDirectory() as scratch:
        database = Database(f"sqlite:///{scratch}/faces.db")
        database.migrate()
        sealer = TemplateSealer(os.urandom(32))
        started = time.perf_counter()
        with database.session() as session:
            repository = FaceTemplates(session)
            for seq in range(count):
                subject = f"s{seq}"
                session.add(FaceTemplate(
                    subject_kind=SubjectKind.cameo, subject_id=subject, key_id=sealer.key_id, source="bench",
                    sealed=sealer.seal(matrix[seq], subject_ref(SubjectKind.cameo, subject))))
            repository._bump()
        seal_store_s = time.perf_counter() - started
        likeness = Likeness(database, sealer)
        started = time.perf_counter()
        likeness.sync()
        cold_s = time.perf_counter() - started
        with database.session() as session:
            FaceTemplates(session).add(SubjectKind.cameo, "new", sealer.seal(probe, "cameo:new"), sealer.key_id,
                                       "bench")
        started = time.perf_counter()
        likeness.sync()
        incremental_ms = 1000 * (time.perf_counter() - started)
        probe_ms = _median_ms(likeness.sync, 20)
        database.dispose()
    rows = [
        ["numpy index: every template >= threshold (what the checks use)", f"{indexed_ms:.2f} ms", "1.0x"],
        ["numpy index: top-5", f"{topk_ms:.2f} ms", f"{topk_ms / indexed_ms:.1f}x"],
        ["similarities only, one un-blocked product (OpenBLAS threads)", f"{unblocked_ms:.2f} ms",
         f"{unblocked_ms / indexed_ms:.1f}x"],
        ["baseline: Python loop, one np.dot per template", f"{loop_ms:.1f} ms", f"{loop_ms / indexed_ms:.0f}x"],
    ]
    text = (f"{count:,} enrolled templates (the {len(templates)} real templates planted among random unit "
            "vectors), one probe face, median of repeated runs; both searches are exact and return the same "
            f"hits (checked).\n\n{markdown_table(['search', 'time per face', 'vs index'], rows)}\n\n"
            f"Keeping the index fresh across processes, same {count:,} templates in SQLite: sealing and storing "
            f"them took {seal_store_s:.1f} s; a cold start (read + AES-GCM open every row) {cold_s:.2f} s; the "
            f"refresh after one new enrolment {incremental_ms:.0f} ms (reads only the row ids plus the new row); "
            f"the per-check version probe when nothing changed {probe_ms:.2f} ms. Index memory: "
            f"{index._snapshot.matrix.nbytes / 1e6:.0f} MB.")
    return text, {"index_ms": indexed_ms, "loop_ms": loop_ms}


# --- 4. per-frame analysis time -------------------------------------------------------------------------------
def timing_section(media: Path) -> str:
    import cv2
    import dlib

    from guard.likeness.analysis import head_pose

    models = face_models()
    asl = decode(media / "asl-again.mkv")[20]
    pictures = [
        ("asl-again.mkv frame, 640x480 (face ~63 px)", asl),
        ("head-pose-female.gif frame, 480x270 (face ~75 px)", decode(media / "head-pose-female.gif")[9]),
        ("astronaut portrait, 512x512 (face ~90 px)", portraits()["astronaut"]),
        ("the asl frame scaled to 1920x1440 (face ~190 px)", cv2.resize(asl, (1920, 1440),
                                                                        interpolation=cv2.INTER_CUBIC)),
    ]
    rows = []
    for label, rgb in pictures:
        baseline = _median_ms(lambda: models.detector(rgb, 1), 3)  # the usual call (face_recognition's default)
        ours = _median_ms(lambda: detect(rgb), 5)
        face = analyze(rgb, embed_faces=False)[0]
        known = _median_ms(lambda: detect(rgb, smallest_face=0.6 * face.box.width), 5)  # the video pass
        rect = dlib.rectangle(face.box.left, face.box.top, face.box.right, face.box.bottom)

        def landmarks_and_pose() -> None:
            shape = models.landmarks(rgb, rect)
            points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
            head_pose(points, rgb.shape[1], rgb.shape[0])

        landmarks = _median_ms(landmarks_and_pose, 5)
        embedding = _median_ms(lambda: embed(rgb, face.box, face.landmarks), 5)
        rows.append([label, f"{baseline:.0f} ms", f"{ours:.0f} ms ({ours / baseline:.2f}x)",
                     f"{known:.0f} ms ({known / baseline:.2f}x)", f"{landmarks:.1f} ms", f"{embedding:.0f} ms",
                     f"{ours + landmarks + embedding:.0f} ms"])
    return ("Medians of repeated runs on a shared 2-core machine (absolute times are for orientation). Detection "
            "is compared with dlib's usual `detector(img, 1)` (upsample once) run side by side: ours scales the "
            "picture to a 1280 px long side (at most 2x up), and in a video pass, knowing the last face's size, "
            "only as far as that face needs.\n\n"
            + markdown_table(["picture", "dlib detect, upsample 1", "our detect", "our detect, face size known",
                              "landmarks + pose", "embedding", "total per frame"], rows)
            + "\n\nThe output check samples 2 frames per second of generated video (detection + landmarks + one "
            "embedding per face on each), and skips the analysis entirely while nobody is enrolled.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--templates", type=int, default=100_000)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    if not MEDIA.is_dir():
        sys.exit(f"the real footage folder {MEDIA} is absent (see ../shared/media/README.md)")
    face_models()
    print("collecting faces ...", file=sys.stderr)
    templates, probes = collect(MEDIA)
    rates, numbers = rates_section(templates, probes)
    print("liveness ...", file=sys.stderr)
    with tempfile.TemporaryDirectory() as work:
        liveness = liveness_section(MEDIA, Path(work))
    print("search ...", file=sys.stderr)
    search, search_numbers = search_section(templates, args.templates)
    print("timing ...", file=sys.stderr)
    timing = timing_section(MEDIA)
    body = (
        "### Match threshold and rates on real faces\n\n"
        f"{len(set(PEOPLE.values()))} people ({', '.join(sorted(set(PEOPLE.values())))}) in 10 real clips, a "
        f"head-turn clip and two portraits. Chosen threshold: cosine {DEFAULT_THRESHOLD} on unit-length dlib "
        "embeddings "
        "(`HALLMARK_FACE_MATCH_THRESHOLD`), the lowest value in the sweep with no false match on this corpus; "
        "a template is the mean of up to 10 clear frames of one clip.\n\n" + rates +
        "\n\n### Liveness: what a static photo and a wrong-order answer get\n\n" + liveness +
        "\n\n### Face search at scale\n\n" + search +
        "\n\n### Per-frame analysis time\n\n" + timing + "\n\n"
        "Caveat: eight people, five of them filmed in one room with one camera, is a small corpus; the threshold "
        "separates them with a thin margin (lowest genuine "
        f"{numbers['genuine_min']:.3f} vs highest impostor {numbers['impostor_max']:.3f}), so operators with "
        "their own footage should re-run this benchmark on it before changing the threshold."
    )
    print(body)
    if not args.no_write:
        write_section("faces", "Faces: match rates, liveness, search at 100,000 templates, analysis time",
                      "python -m bench.faces", body)


if __name__ == "__main__":
    main()
