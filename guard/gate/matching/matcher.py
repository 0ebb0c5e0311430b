"""One matcher over a set of terms (works, protected persons, a cameo's content restrictions): exact, fuzzy,
semantic and image matches, each with its kind, score and evidence span.

    matcher = TermMatcher([Term("w1", aliases=("Mickey Mouse", "Topolino"),
                                descriptions=("Disney's cartoon mouse with red shorts",))])
    matcher.match(Query.of("Topolino al mare"))  # → [Match(key="w1", kind="exact", score=1.0, span=(0, 8), ...)]

A `Query` normalizes the prompt once, encodes it (lazily, once) and hashes the reference image once, so several
matchers (the works, the protected persons, the not-yet-indexed recent works) share the work. The matcher reports
candidates; deciding which of them block a request is the policy's job."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from guard.gate.matching.images import ImageHashes, ImageIndex, query_hashes
from guard.gate.matching.normalize import NormalizedText, normalize
from guard.gate.matching.semantic import DIMENSIONS, Embedder, SemanticIndex, embedder, prompt_chunks
from guard.gate.matching.text_index import AliasIndex

KINDS = ("exact", "fuzzy", "semantic", "image")


@dataclass(frozen=True)
class MatchSettings:
    semantic: bool = True  # the semantic matcher can be switched off (e.g. a lightweight deployment)
    semantic_floor: float = 0.40  # cosine below which a description is not even a candidate
    semantic_top_k: int = 8
    image_floor: float = 0.70
    weak_alias_score: float = 0.6  # an exact match on an alias that is one common word


@dataclass(frozen=True)
class Term:
    key: Hashable
    aliases: tuple[str, ...] = ()
    descriptions: tuple[str, ...] = ()
    description_vectors: np.ndarray | None = None  # precomputed, one row per description (else encoded here)
    images: tuple[tuple[str, ImageHashes], ...] = ()  # (label, hashes)


@dataclass(frozen=True)
class Match:
    key: Hashable
    kind: str  # exact | fuzzy | semantic | image
    score: float  # 0..1
    matched: str  # the alias, description or image it matched
    text: str | None = None  # what in the prompt matched
    span: tuple[int, int] | None = None  # where in the prompt (characters)
    genericity: float = 0.0  # semantic only: how close the matched description is to an everyday prompt

    def evidence(self) -> dict[str, Any]:
        return {"kind": self.kind, "score": round(self.score, 3), "span": list(self.span) if self.span else None,
                "text": self.text, "matched": self.matched}


@dataclass
class Query:
    prompt: str
    normalized: NormalizedText
    image: list[ImageHashes] | None = None
    _embedder: Embedder | None = None
    _chunks: list[str] | None = None
    _vectors: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def of(cls, prompt: str, *, image: Image.Image | None = None, model: Embedder | None = None) -> "Query":
        return cls(prompt, normalize(prompt), query_hashes(image) if image is not None else None, model)

    @property
    def chunks(self) -> list[str]:
        if self._chunks is None:
            self._chunks = prompt_chunks(self.prompt)
        return self._chunks

    @property
    def vectors(self) -> np.ndarray:
        if self._vectors is None:
            self._vectors = (self._embedder or embedder()).encode(self.chunks)
        return self._vectors


class TermMatcher:
    def __init__(self, terms: Iterable[Term], settings: MatchSettings = MatchSettings(), *,
                 model: Embedder | None = None, background: np.ndarray | None = None) -> None:
        self.settings = settings
        terms = list(terms)
        self.aliases = AliasIndex(((term.key, alias) for term in terms for alias in term.aliases),
                                  context=((term.key, word) for term in terms for word in distinctive_words(term)))
        keys: list[Hashable] = []
        texts: list[str] = []
        vectors: list[np.ndarray] = []
        missing: list[int] = []
        for term in terms:
            for i, description in enumerate(term.descriptions):
                keys.append(term.key)
                texts.append(description)
                if term.description_vectors is not None:
                    vectors.append(np.asarray(term.description_vectors[i], dtype=np.float32))
                else:
                    missing.append(len(vectors))
                    vectors.append(np.zeros(DIMENSIONS, dtype=np.float32))
        if missing and settings.semantic:
            encoded = (model or embedder()).encode([texts[i] for i in missing])
            for row, i in enumerate(missing):
                vectors[i] = encoded[row]
        matrix = np.vstack(vectors) if vectors else np.zeros((0, DIMENSIONS), dtype=np.float32)
        self.semantic = SemanticIndex(keys, texts, matrix, background)
        self.images = ImageIndex([(term.key, label, hashes) for term in terms for label, hashes in term.images])

    def match(self, query: Query | str) -> list[Match]:
        if isinstance(query, str):
            query = Query.of(query)
        s = self.settings
        matches = [
            Match(hit.key, hit.kind, s.weak_alias_score if hit.weak else hit.score, hit.alias, hit.text,
                  (hit.start, hit.end))
            for hit in self.aliases.find(query.normalized)
        ]
        if s.semantic and len(self.semantic):
            for hit in self.semantic.search(query.chunks, query.vectors, floor=s.semantic_floor,
                                            top_k=s.semantic_top_k):
                start = query.prompt.find(hit.chunk)
                span = (start, start + len(hit.chunk)) if start >= 0 else None
                matches.append(Match(hit.key, "semantic", hit.score, hit.description, hit.chunk, span,
                                     hit.genericity))
        if query.image is not None and len(self.images):
            for hit in self.images.search(query.image, floor=s.image_floor):
                matches.append(Match(hit.key, "image", hit.score, hit.label, None, None))
        return matches


def distinctive_words(term: Term) -> set[str]:
    """Proper nouns of a term's descriptions that are not common words ("Arendelle",
    "Gotham", "Hogwarts"): a prompt that uses one is likely talking about the term, which supports a semantic
    match. Capitalised words other than a text's first are taken as proper nouns."""
    from guard.gate.matching.lexicon import common_words

    lexicon = common_words()
    aliases = {normalize(alias).text for alias in term.aliases}
    words: set[str] = set()
    for text in term.descriptions:  # not the aliases: titles capitalise every word ("Sonic the Hedgehog")
        for position, raw in enumerate(text.replace("'s ", " ").split()):
            raw = raw.strip(".,;:!?()\"'")
            if position == 0 or not raw[:1].isupper():
                continue
            form = normalize(raw).text
            if len(form) >= 5 and form.isalpha() and form not in lexicon and form not in aliases:
                words.add(raw)
    return words


def best_by_key(matches: Iterable[Match]) -> dict[Hashable, dict[str, Match]]:
    """key → kind → the strongest match of that kind."""
    best: dict[Hashable, dict[str, Match]] = {}
    for match in matches:
        kinds = best.setdefault(match.key, {})
        if match.kind not in kinds or kinds[match.kind].score < match.score:
            kinds[match.kind] = match
    return best


def match_terms(prompt: str, terms: Sequence[Term], *, semantic: bool = False,
                settings: MatchSettings | None = None) -> list[Match]:
    """Match a prompt against an ad-hoc set of terms (e.g. a cameo owner's content restrictions: each term a
    category with its words and, for semantic matching, a description). Builds a small matcher on the fly."""
    settings = settings or MatchSettings(semantic=semantic)
    return TermMatcher(terms, settings).match(Query.of(prompt))
