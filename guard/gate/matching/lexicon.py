"""Common words, so that an alias typed plainly or a near-miss is not taken for a disguise of a name.

Two lists, for two questions:

- `common_words()`: is this alias *itself* an everyday word ("Frozen", "Sonic")? Then a plain mention of it is weak
  evidence. The list is the whole-word part of the WordPiece vocabulary that ships with the sentence-embedding
  model (about 21,000 very common English words), so only really common words count.
- `known_words()`: is this near-miss a real word ("samba" next to "Simba", "tundra" next to a registered "Drundra",
  "pika" next to "Pelka")? Then it is not a misspelling. With 100,000 registered aliases, almost every short word is
  one edit away from some alias, so this list must be broad: the common list plus every word at or above a Zipf
  frequency of 2.5 in English and 3.0 in Spanish, French, German, Italian and Portuguese, from `wordfreq` (its
  frequency tables ship inside the package)."""

from __future__ import annotations

from functools import lru_cache

from guard.gate.matching.normalize import fold

# Short words are not in the lists below (they keep words of 3+ letters), but "a man" is still two common words.
FUNCTION_WORDS = ("a", "i", "an", "in", "on", "of", "to", "at", "by", "is", "it", "as", "or", "be", "we", "he", "me",
                  "my", "no", "so", "up", "us", "do", "go", "if", "am", "oh", "ok")
KNOWN_WORD_ZIPF = {"en": 2.5, "es": 3.0, "fr": 3.0, "de": 3.0, "it": 3.0, "pt": 3.0}


def _fold_word(word: str) -> str:
    if word.isascii() and word.isalpha():  # the common case, without the per-character pipeline
        return word.lower().replace("m", "rn").replace("l", "i")
    return fold(word)


@lru_cache(maxsize=1)
def common_words() -> frozenset[str]:
    from guard.gate.matching.semantic import model_path

    vocab = model_path() / "vocab.txt"
    words = {fold(word) for word in FUNCTION_WORDS}
    for line in vocab.read_text(encoding="utf-8").splitlines():
        if len(line) >= 3 and line.isalpha() and line.isascii():
            words.add(_fold_word(line))
    if len(words) < 10_000:
        raise RuntimeError(f"The word list from {vocab} has only {len(words)} words; the model package is damaged.")
    return frozenset(words)


@lru_cache(maxsize=1)
def known_words() -> frozenset[str]:
    import wordfreq

    words = set(common_words())
    for language, zipf in KNOWN_WORD_ZIPF.items():
        floor = 10 ** (zipf - 9)  # Zipf = log10(frequency per billion words)
        for word, frequency in wordfreq.get_frequency_dict(language, wordlist="best").items():
            if frequency >= floor and len(word) >= 3 and word.isalpha():
                words.add(_fold_word(word))
    return frozenset(words)
