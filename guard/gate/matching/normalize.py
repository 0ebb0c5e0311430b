"""Prompt normalization that undoes the usual disguises before matching.

Each character is, in order: decomposed (NFKD, which includes NFKC's compatibility folding: full-width letters,
ligatures, mathematical alphabets, circled letters); stripped of combining marks (diacritics, variation selectors);
dropped when invisible (zero-width and other format characters: they must not split a word); case-folded; read as
a letter when it is leetspeak (digits always, symbols such as `@ $ !` only inside a word); mapped to its UTS #39
confusable prototype (Cyrillic `а` → `a`); and finally `l` and `i` are merged, because `1`, `|`, `I` and `l` all
stand in for one another.

What remains is a compact stream of letters and digits with no spaces or punctuation, plus the word boundaries of
the original text. A name then matches when a run of compact characters equals it *and* starts and ends on word
boundaries: "M i c k e y", "M.i.c.k.e.y", "Mic key" and "Mickey" all give the same run, but "oscars" does not contain
the alias "cars". Scripts written without spaces (Han, kana, Thai) have a boundary at every character.

`origin[i]` keeps the index in the original text of compact character i, so every match reports the span the
person actually typed."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from guard.gate.matching.confusables import prototypes

# Digits are letters in leetspeak wherever they stand; in an ordinary number the folded letters match nothing.
LEET_DIGITS = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g"}
# Symbols are letters only when a letter or digit follows (M!ckey, $pider, M@rio), never at a word's end (Wow!).
LEET_SYMBOLS = {"@": "a", "$": "s", "!": "i", "|": "i", "€": "e", "¡": "i"}
# Invisible characters that are not in category Cf (format) but render as nothing.
INVISIBLE = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u034f", "\u180e", "\u2800"}
FINAL_FOLD = {"l": "i"}


def _spaceless(char: str) -> bool:
    """Characters of scripts written without spaces between words: every character is a word on its own."""
    code = ord(char)
    return (0x3040 <= code <= 0x30FF or 0x3400 <= code <= 0x4DBF or 0x4E00 <= code <= 0x9FFF
            or 0xF900 <= code <= 0xFAFF or 0x0E00 <= code <= 0x0E7F or 0x31F0 <= code <= 0x31FF
            or 0xFF66 <= code <= 0xFF9F or 0x20000 <= code <= 0x2FFFF)


def _prototype(char: str) -> str:
    """The UTS #39 prototype, preferring a Latin one from either case: the table maps Cyrillic capital `М` to `M`
    but small `м` to IPA `ʍ`, and people type the small one."""
    table = prototypes()
    for candidate in (char, char.upper(), char.lower()):
        mapped = table.get(candidate, candidate)
        if mapped.isascii():
            return mapped
    return table.get(char, char)


@lru_cache(maxsize=65536)
def _fold_char(char: str) -> str:
    """One original character → its folded letters ("" when invisible or a mark; " " when it separates words).
    Symbols that are leetspeak only inside a word are handled by the caller."""
    table = prototypes()
    out: list[str] = []
    for part in unicodedata.normalize("NFKD", char):
        if unicodedata.category(part) in ("Mn", "Me", "Cf") or part in INVISIBLE:
            continue
        if part in LEET_DIGITS:
            out.append(LEET_DIGITS[part])
            continue
        for piece in unicodedata.normalize("NFKD", _prototype(part)).casefold():
            if unicodedata.category(piece) in ("Mn", "Me"):
                continue
            if not piece.isalnum():
                out.append(" ")
                continue
            for letter in table.get(piece, piece) if piece.isascii() else piece:  # m → rn, as the skeleton does
                letter = LEET_DIGITS.get(letter, letter)
                out.append(FINAL_FOLD.get(letter, letter))
    if not out and unicodedata.category(char)[0] in "ZPS":
        return " "
    return "".join(out)


@dataclass(frozen=True)
class NormalizedText:
    original: str
    text: str  # compact folded letters and digits
    origin: tuple[int, ...]  # text[i] came from original[origin[i]]
    starts: frozenset[int]  # compact positions where a word starts
    ends: frozenset[int]  # compact positions (exclusive) where a word ends
    words: tuple[tuple[int, int], ...]  # (start, end) of each word in compact positions

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Compact [start, end) → the original text's [start, end)."""
        return self.origin[start], self.origin[end - 1] + 1

    def original_text(self, start: int, end: int) -> str:
        a, b = self.span(start, end)
        return self.original[a:b]

    def words_in(self, start: int, end: int) -> list[tuple[int, int]]:
        return [(a, b) for a, b in self.words if a >= start and b <= end]


def normalize(text: str) -> NormalizedText:
    compact: list[str] = []
    origin: list[int] = []
    starts: set[int] = set()
    ends: set[int] = set()
    words: list[tuple[int, int]] = []
    word_start: int | None = None

    def close_word() -> None:
        nonlocal word_start
        if word_start is not None and len(compact) > word_start:
            ends.add(len(compact))
            words.append((word_start, len(compact)))
        word_start = None

    for index, char in enumerate(text):
        if char in LEET_SYMBOLS:
            following = text[index + 1] if index + 1 < len(text) else ""
            folded = LEET_SYMBOLS[char] if following and _fold_char(following).strip() else " "
        else:
            folded = _fold_char(char)
        for piece in folded:
            if piece == " ":
                close_word()
                continue
            if _spaceless(piece):
                close_word()
                starts.add(len(compact))
                compact.append(piece)
                origin.append(index)
                ends.add(len(compact))
                words.append((len(compact) - 1, len(compact)))
                continue
            if word_start is None:
                word_start = len(compact)
                starts.add(word_start)
            compact.append(piece)
            origin.append(index)
    close_word()
    return NormalizedText(text, "".join(compact), tuple(origin), frozenset(starts), frozenset(ends), tuple(words))


def fold(term: str) -> str:
    """The compact folded form of a name or alias (what `normalize(...).text` gives for it)."""
    return normalize(term).text


def fold_words(term: str) -> list[str]:
    """The folded words of a name or alias."""
    normalized = normalize(term)
    return [normalized.text[a:b] for a, b in normalized.words]
