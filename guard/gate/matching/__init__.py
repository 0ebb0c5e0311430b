"""Evasion-resistant matching of prompts (and reference images) against registered terms: works, protected
persons, a cameo's content restrictions. See `matcher.TermMatcher` and `match_terms`."""

from guard.gate.matching.images import ImageHashes, open_image
from guard.gate.matching.matcher import (KINDS, Match, MatchSettings, Query, Term, TermMatcher, best_by_key,
                                         match_terms)
from guard.gate.matching.normalize import NormalizedText, fold, normalize
from guard.gate.matching.semantic import Embedder, embedder, from_bytes, to_bytes

__all__ = ["KINDS", "Embedder", "ImageHashes", "Match", "MatchSettings", "NormalizedText", "Query", "Term",
           "TermMatcher", "best_by_key", "embedder", "fold", "from_bytes", "match_terms", "normalize",
           "open_image", "to_bytes"]
