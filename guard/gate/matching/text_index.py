"""Exact and fuzzy alias matching over a compact normalized prompt, fast at hundreds of thousands of aliases.

Exact: one Aho-Corasick automaton (pyahocorasick) over every alias's folded form; a hit counts only when it starts
and ends on word boundaries of the prompt.

Fuzzy: symmetric deletion (the SymSpell idea). Every alias is indexed under itself and each string made by deleting
up to k of its characters; a window of the prompt is looked up under itself and its own deletion variants; two
strings within edit distance k always share such a variant. The variants are kept as 64-bit hashes in one sorted
NumPy array (about 12 bytes per variant instead of a Python dict entry), looked up with one vectorised
`searchsorted`; candidates are then confirmed with the true optimal-string-alignment distance (rapidfuzz), so a hash
collision costs a comparison, never a false match. Allowed edits grow with the alias's length: none up to 4
characters, 1 up to 6, 2 beyond. A candidate window is a run of whole words of the prompt (runs of single letters,
as in "M i k e y", count as one word) whose length is within k of some alias.

A fuzzy match made only of common words (see lexicon) must also line up word by word: one word of the alias typed
exactly, and each of its words matched by a word of the window within that word's own edit budget. "samba" is not a
misspelling of "Simba", "a man" is not "Batman" and "queen in a" is not "Queen Elsa", but "Mikey Mouse" is "Mickey
Mouse". An alias that is itself one common word gets no such allowance: "tonic" and "a frozen" are words, not
misspellings of "Sonic" or "Frozen".

An alias that is a single common word ("Frozen", "Sonic") is *weak* when typed plainly: "a frozen lake" says
nothing about the film. It is strong again when it was disguised (homoglyphs, leetspeak, spacing: nobody disguises
the word "frozen") or written as a proper noun (capitalised inside a sentence, or in capitals). The matcher reports
weak hits with `weak=True`; the policy decides what they need (semantic support, by default)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

import ahocorasick
import numpy as np
from rapidfuzz.distance import OSA

from guard.gate.matching.lexicon import common_words, known_words
from guard.gate.matching.normalize import NormalizedText, normalize

MIN_ALIAS_CHARS = 3  # shorter folded aliases would match inside too many ordinary words
MAX_FUZZY_CHARS = 40  # longer aliases are matched exactly (and semantically); windows beyond this are not tried
# Only the first PREFIX characters are indexed (SymSpell's prefix trick): an edit inside the prefix shifts at most one
# character across its end, which one more deletion absorbs, and an edit after it changes nothing there. Candidates
# are then confirmed on the whole strings. This keeps the index at <= 37 variants per alias.
PREFIX = 8


def usable_alias(form: str) -> bool:
    """Long enough to match safely: 3 folded characters, or 2 in a non-Latin script (e.g. a Japanese name)."""
    return len(form) >= MIN_ALIAS_CHARS or (len(form) >= 2 and not form.isascii())


def allowed_edits(length: int) -> int:
    if length <= 4:
        return 0
    return 1 if length <= 6 else 2


@dataclass(frozen=True)
class TextHit:
    key: Hashable  # what the alias belongs to (a work, a person, a category)
    alias: str  # the alias as registered
    kind: str  # exact | fuzzy
    score: float  # 1.0 for exact; 1 - distance / length for fuzzy
    start: int  # span in the original prompt
    end: int
    text: str  # what the person typed there
    distance: int = 0
    weak: bool = False  # the alias is a single common word ("Frozen", "Cars"): not proof on its own


def _deletions(text: str, depth: int) -> set[str]:
    variants = {text}
    frontier = {text}
    for _ in range(depth):
        frontier = {word[:i] + word[i + 1:] for word in frontier if len(word) > 1 for i in range(len(word))}
        variants |= frontier
    return variants


class AliasIndex:
    def __init__(self, entries: Iterable[tuple[Hashable, str]], *,
                 context: Iterable[tuple[Hashable, str]] = ()) -> None:
        """`entries`: (key, alias). `context`: (key, word) pairs of distinctive words taken from descriptions
        ("Arendelle", "Hogwarts"): matched exactly, never fuzzily, and always weak (supporting evidence only)."""
        self.keys: list[Hashable] = []
        self.aliases: list[str] = []
        self.folded: list[str] = []
        self.alias_words: list[frozenset[str]] = []
        self.weak: list[bool] = []
        self.context: set[int] = set()
        by_form: dict[str, list[int]] = defaultdict(list)
        hashes: list[int] = []
        owners: list[int] = []
        for key, alias in entries:
            normalized = normalize(alias)
            form = normalized.text
            if not usable_alias(form):
                continue
            index = len(self.keys)
            self.keys.append(key)
            self.aliases.append(alias)
            self.folded.append(form)
            self.alias_words.append(frozenset(form[a:b] for a, b in normalized.words))
            self.weak.append(len(normalized.words) == 1 and form in common_words())
            by_form[form].append(index)
            edits = allowed_edits(len(form))
            if edits and len(form) <= MAX_FUZZY_CHARS:
                for variant in _deletions(form[:PREFIX], edits):
                    hashes.append(hash(variant))
                    owners.append(index)
        for key, word in context:
            form = normalize(word).text
            if len(form) < 5 or form in by_form:
                continue
            index = len(self.keys)
            self.keys.append(key)
            self.aliases.append(word)
            self.folded.append(form)
            self.alias_words.append(frozenset([form]))
            self.weak.append(True)
            self.context.add(index)
            by_form[form].append(index)
        self.automaton = ahocorasick.Automaton()
        for form, indices in by_form.items():
            self.automaton.add_word(form, tuple(indices))
        if by_form:
            self.automaton.make_automaton()
        order = np.argsort(np.asarray(hashes, dtype=np.int64), kind="stable")
        self.variant_hashes = np.asarray(hashes, dtype=np.int64)[order]
        self.variant_owners = np.asarray(owners, dtype=np.int32)[order]
        lengths = [len(form) for form in self.folded] or [0]
        self.min_len, self.max_len = min(lengths), max(lengths)

    def __len__(self) -> int:
        return len(self.keys)

    def find(self, prompt: str | NormalizedText, *, fuzzy: bool = True) -> list[TextHit]:
        text = prompt if isinstance(prompt, NormalizedText) else normalize(prompt)
        hits = self._exact(text)
        if fuzzy and len(self.variant_hashes):
            hits += self._fuzzy(text)
        return hits

    def _exact(self, text: NormalizedText) -> list[TextHit]:
        hits: list[TextHit] = []
        if not self.keys or not text.text:
            return hits
        for last, indices in self.automaton.iter(text.text):
            start, end = last - len(self.folded[indices[0]]) + 1, last + 1
            if start not in text.starts or end not in text.ends:
                continue
            a, b = text.span(start, end)
            for index in indices:
                typed = text.original[a:b]
                weak = index in self.context or (self.weak[index] and not _disguised(typed, self.aliases[index])
                                                 and not _proper_noun(text, a))
                hits.append(TextHit(self.keys[index], self.aliases[index], "exact", 1.0, a, b, typed, weak=weak))
        return hits

    def _windows(self, text: NormalizedText) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Runs of whole words whose length could be within the edit budget of an alias, and the words they are
        made of. Runs of one-letter words ("M i k e y") are merged into one word first, so spelling a name out
        does not multiply the windows."""
        words = _coarse_words(text)
        lowest = max(1, self.min_len - 2)
        highest = min(MAX_FUZZY_CHARS, self.max_len) + 2
        windows = []
        for i, (start, _) in enumerate(words):
            for _, end in words[i:]:
                length = end - start
                if length > highest:
                    break
                if length >= max(lowest, 4):
                    windows.append((start, end))
        return windows, words

    def _fuzzy(self, text: NormalizedText) -> list[TextHit]:
        windows, words = self._windows(text)
        if not windows:
            return []
        by_prefix: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for start, end in windows:
            by_prefix[text.text[start:min(end, start + PREFIX)]].append((start, end))
        prefixes = list(by_prefix)
        query_hashes: list[int] = []
        query_prefix: list[int] = []
        for number, prefix in enumerate(prefixes):
            for variant in _deletions(prefix, 2):
                query_hashes.append(hash(variant))
                query_prefix.append(number)
        hashes = np.asarray(query_hashes, dtype=np.int64)
        left = np.searchsorted(self.variant_hashes, hashes, side="left")
        right = np.searchsorted(self.variant_hashes, hashes, side="right")
        found = np.nonzero(right > left)[0]
        pairs: set[tuple[int, int]] = set()
        for i in found.tolist():
            number = query_prefix[i]
            for owner in self.variant_owners[left[i]:right[i]].tolist():
                pairs.add((number, owner))
        lexicon = known_words()
        hits: list[TextHit] = []
        for number, owner in pairs:
            form = self.folded[owner]
            for start, end in by_prefix[prefixes[number]]:
                candidate = text.text[start:end]
                typo = _typo(candidate, form)
                if typo is None:
                    continue
                distance, length = typo
                # an isolated letter ("wizard's hat") is part of ordinary text; spelled-out runs were merged
                window_words = {text.text[a:b] for a, b in words if a >= start and b <= end and b - a > 1}
                if window_words <= lexicon and (self.weak[owner] or not _aligned(window_words,
                                                                                  self.alias_words[owner])):
                    continue  # real words, not a disguise (see the module docstring)
                a, b = text.span(start, end)
                score = 1.0 - distance / length
                hits.append(TextHit(self.keys[owner], self.aliases[owner], "fuzzy", score, a, b,
                                    text.original[a:b], distance))
        return hits


def _typo(candidate: str, form: str) -> tuple[int, int] | None:
    """(edits, length) when `candidate` is a misspelling of the alias `form` within its edit budget, else None.

    Both are folded, and the UTS #39 skeleton spells every "m" as "rn" (so that an "rn" typed for an "m" matches
    exactly). That makes an "m" two letters: a doubled or dropped "m" ("Obamma" for "Obama") would cost two edits,
    past a short name's budget of one. So the distance is also taken with "rn" read back as "m", and the closer
    reading counts; the mapping is one-to-one on folded text (which holds no "m"), so neither reading finds an
    exact match the other does not."""
    readings = [(candidate, form)]
    if "rn" in candidate or "rn" in form:  # otherwise the second reading is the first one again
        readings.append((candidate.replace("rn", "m"), form.replace("rn", "m")))
    best: tuple[int, int] | None = None
    for typed, alias in readings:
        budget = allowed_edits(len(alias))
        if abs(len(alias) - len(typed)) > budget:
            continue
        distance = OSA.distance(typed, alias, score_cutoff=budget)
        if distance > budget or distance == 0:
            continue
        length = max(len(alias), len(typed))
        if best is None or distance / length < best[0] / best[1]:
            best = (distance, length)
    return best


def _aligned(window_words: set[str], alias_words: frozenset[str]) -> bool:
    """Some alias word is typed exactly and every alias word has a window word within its own edit budget."""
    def budget(word: str) -> int:  # a short name word may be one letter off ("Elza"), but not a 3-letter one
        return max(allowed_edits(len(word)), 1 if len(word) >= 4 else 0)

    return bool(window_words & alias_words) and all(
        any(OSA.distance(w, a, score_cutoff=budget(a)) <= budget(a) for w in window_words) for a in alias_words)


def _disguised(typed: str, alias: str) -> bool:
    """Typed differently from the alias beyond letter case and spacing (homoglyphs, leetspeak, inserted marks)."""
    return " ".join(typed.casefold().split()) != " ".join(alias.casefold().split())


def _proper_noun(text: NormalizedText, start: int) -> bool:
    """Capitalised inside a sentence ("a scene from Frozen") or written in capitals ("FROZEN")."""
    word = text.original[start:start + 40].split()[0] if text.original[start:].strip() else ""
    if len(word) > 1 and word.isupper():
        return True
    if not word[:1].isupper():
        return False
    before = text.original[:start].rstrip()
    return bool(before) and before[-1] not in '.!?:;"\'(\u201c\u2018['


def _coarse_words(text: NormalizedText) -> list[tuple[int, int]]:
    """The words of the text, with runs of two or more one-letter words merged into one."""
    words: list[tuple[int, int]] = []
    single = False  # the last word is a run of one-letter words
    for a, b in text.words:
        if b - a == 1 and single and words and words[-1][1] == a:
            words[-1] = (words[-1][0], b)
        else:
            words.append((a, b))
            single = b - a == 1
    return words
