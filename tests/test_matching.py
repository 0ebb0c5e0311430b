"""The prompt matcher: normalization against each disguise, exact and fuzzy alias matching, the common-word rules,
semantic matching with the packaged model, reference images by perceptual hash, and the reusable `match_terms`."""

from __future__ import annotations

import io
import os
import random
import time

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from tests.conftest import exported_embedding_model
from guard.gate.matching import ImageHashes, Query, Term, TermMatcher, embedder, match_terms
from guard.gate.matching.images import ImageIndex, query_hashes
from guard.gate.matching import semantic
from guard.gate.matching.semantic import Embedder, model_path
from guard.gate.matching.text_index import AliasIndex

ALIASES = [("mickey", "Mickey Mouse"), ("mickey", "Topolino"), ("mickey", "Musse Pigg"), ("mickey", "ミッキーマウス"),
           ("simba", "Simba"), ("spidey", "Spider-Man"), ("pika", "Pikachu"), ("vader", "Darth Vader"),
           ("batman", "Batman"), ("frozen", "Frozen")]


@pytest.fixture(scope="module")
def index() -> AliasIndex:
    return AliasIndex(ALIASES)


@pytest.mark.parametrize("disguise", [
    "Mickey Mouse", "MICKEY MOUSE", "Міскеу Моusе",  # Cyrillic
    "Mi\u200bck\u200bey Mo\u200duse", "M\u2060i\u2060c\u2060k\u2060e\u2060y Mouse",  # zero-width, word joiner
    "M1ck3y M0use", "M!ckey Mouse", "M i c k e y  M o u s e", "M.i.c.k.e.y M.o.u.s.e", "Mic key Mouse",
    "\uff2d\uff49\uff43\uff4b\uff45\uff59 Mouse",  # full-width
    "\U0001d40c\U0001d422\U0001d41c\U0001d424\U0001d41e\U0001d432 Mouse",  # mathematical bold
    "Mïckéy Moüse",  # diacritics
])
def test_disguises_normalize_to_the_alias(index: AliasIndex, disguise: str) -> None:
    hits = [h for h in index.find(f"a video of {disguise} on a boat") if h.key == "mickey" and h.kind == "exact"]
    assert hits, disguise
    hit = hits[0]
    prompt = f"a video of {disguise} on a boat"
    assert prompt[hit.start:hit.end] == hit.text and hit.text.strip() == disguise.strip()


def test_other_scripts_and_languages(index: AliasIndex) -> None:
    assert {h.key for h in index.find("Topolino al mare")} == {"mickey"}
    assert {h.key for h in index.find("ミッキーマウスが踊っている")} == {"mickey"}  # no spaces in Japanese


@pytest.mark.parametrize("typo,key", [("Mikey Mouse", "mickey"), ("Mickee Moose", "mickey"), ("Spidr-Man", "spidey"),
                                      ("Pikachoo", "pika"), ("Darth Vadar", "vader"), ("Battman", "batman"),
                                      ("Simbaa", "simba"),
                                      # an "m" is "rn" in the skeleton; doubling it is still one letter off
                                      ("Simmba", "simba")])
def test_misspellings_match_fuzzily(index: AliasIndex, typo: str, key: str) -> None:
    hits = [h for h in index.find(f"{typo} at the beach") if h.key == key]
    assert hits and hits[0].kind == "fuzzy" and 0.7 <= hits[0].score < 1.0 and hits[0].text == typo


@pytest.mark.parametrize("benign", ["a couple dancing samba", "oscars ceremony", "a man in a hat", "a glass of tonic",
                                    "a spider spinning a web at dawn", "a mouse eating cheese in a kitchen"])
def test_words_are_not_misspellings(index: AliasIndex, benign: str) -> None:
    assert [h for h in index.find(benign) if not h.weak] == []


def test_weak_aliases_need_a_disguise_or_a_proper_noun(index: AliasIndex) -> None:
    assert [h.weak for h in index.find("a frozen lake at dawn")] == [True]
    assert [h.weak for h in index.find("a scene from Frozen")] == [False]  # a proper noun inside a sentence
    assert [h.weak for h in index.find("a Fr0zen scene")] == [False]  # nobody disguises the word "frozen"


def test_alias_index_stays_fast_with_many_aliases() -> None:
    """20,000 aliases here (the 100,000-alias figure is measured by `python -m bench.gate`)."""
    rng = random.Random(5)
    syllables = ["ka", "zor", "vel", "mi", "ra", "tho", "quin", "bel", "dra", "nox", "fi", "lu", "gar", "sen"]
    entries = [(f"w{i}", " ".join("".join(rng.choice(syllables) for _ in range(3)).capitalize() for _ in range(2)))
               for i in range(20_000)]
    index = AliasIndex([*entries, ("mickey", "Mickey Mouse")])
    index.find("warm-up")
    started = time.perf_counter()
    for _ in range(20):
        hits = index.find("Mikey Mouse walking with a friend through a forest of tall pines, cinematic")
    per_prompt = (time.perf_counter() - started) / 20
    assert any(h.key == "mickey" for h in hits)
    assert per_prompt < 0.05


def test_the_model_loads_from_the_installed_package_and_never_from_the_hub() -> None:
    path = model_path()
    assert "site-packages" in str(path) and (path / "model.safetensors").is_file()
    model = embedder()
    assert model is embedder()  # once per process
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    vectors = model.encode(["a cartoon mouse", "a cartoon mouse"])
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_the_onnx_backend_gives_the_same_embeddings_as_sentence_transformers() -> None:
    # `onnx` is a dependency, so the export must work here: no fallback, no skip (the session's export is reused).
    exported = exported_embedding_model()
    assert exported is not None, "the ONNX export failed (see the log)"
    model = Embedder(model_path(), backend="onnx", cache=exported.parent)
    assert model.backend == "onnxruntime"
    reference = Embedder(model_path(), backend="torch")
    texts = ["the cheerful cartoon mouse with red shorts and big round ears waves", "Sp1d3r-M@n", "a bowl of soup",
             "ピカチュウ", " ".join(["a dragon over the sea"] * 80)]
    for batch in (texts, texts * 4):  # a prompt's chunks (one thread), and a bulk encode (all cores)
        cosine = (model.encode(batch) * reference.encode(batch)).sum(axis=1)
        assert cosine.min() >= 0.999


def test_a_failed_onnx_export_falls_back_to_torch(tmp_path, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("no exporter")

    monkeypatch.setattr(semantic, "_export", broken)
    model = Embedder(model_path(), cache=tmp_path)
    assert model.backend == "torch" and not list(tmp_path.iterdir())
    assert model.encode(["a cartoon mouse"]).shape == (1, 384)


def test_paraphrases_match_semantically() -> None:
    matcher = TermMatcher([
        Term("mickey", aliases=("Mickey Mouse",),
             descriptions=("Disney's cheerful cartoon mouse with red shorts, white gloves and big round black ears",)),
        Term("spidey", aliases=("Spider-Man",),
             descriptions=("a superhero in a red and blue suit who swings between skyscrapers on webs",)),
    ])
    hits = matcher.match("the cheerful cartoon mouse with red shorts and big round ears waves")
    semantic = [m for m in hits if m.kind == "semantic"]
    assert semantic and semantic[0].key == "mickey" and semantic[0].score > 0.7
    assert semantic[0].span is not None
    unrelated = [m for m in matcher.match("a bowl of soup on a wooden table") if m.kind == "semantic"]
    assert all(m.score < 0.4 for m in unrelated)


def test_match_terms_is_reusable_for_content_restrictions() -> None:
    restrictions = [Term("alcohol", aliases=("beer", "whisky", "vodka"),
                         descriptions=("drinking alcohol at a bar",)),
                    Term("politics", aliases=("election", "campaign rally"))]
    assert {m.key for m in match_terms("@alice holding a b33r", restrictions)} == {"alcohol"}
    assert {m.key for m in match_terms("@alice at a c a m p a i g n rally", restrictions)} == {"politics"}
    assert match_terms("@alice walking a dog", restrictions) == []
    semantic = match_terms("@alice sipping cocktails at a pub", restrictions, semantic=True)
    assert any(m.key == "alcohol" and m.kind == "semantic" for m in semantic)


def _png(image: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_reference_images_match_by_perceptual_hash() -> None:
    from skimage import data

    astronaut = Image.fromarray(data.astronaut())
    coffee = Image.fromarray(data.coffee())
    chelsea = Image.fromarray(data.chelsea())
    index = ImageIndex([("poster", "astronaut.png", ImageHashes.of(astronaut)),
                        ("mug", "coffee.png", ImageHashes.of(coffee))])
    # a re-encoded, downscaled, brightened, mirrored copy is still the poster
    copy = ImageEnhance.Brightness(astronaut.resize((200, 200))).enhance(1.15).transpose(Image.FLIP_LEFT_RIGHT)
    copy = Image.open(io.BytesIO(_png(copy.convert("RGB"), "JPEG", quality=60)))
    hits = index.search(query_hashes(copy), floor=0.7)
    assert [h.key for h in hits] == ["poster"] and hits[0].score >= 0.85
    # a different picture is not
    assert all(h.score < 0.85 for h in index.search(query_hashes(chelsea), floor=0.0))
    matcher = TermMatcher([Term("poster", images=(("astronaut.png", ImageHashes.of(astronaut)),))])
    assert [m.kind for m in matcher.match(Query.of("a picture", image=copy))] == ["image"]
