"""The gate: decides whether a request may be generated, before anything is generated, and again before release.

    facts = matches of the prompt (and reference image) against the works and the protected persons
          + the cameos it mentions + the requester, their licences and the request's attributes
    decision = the Cedar policies in policies/ over those facts (see policy.py)

Any error while matching or evaluating denies with `check_unavailable`: the gate fails closed."""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, field, replace
from functools import lru_cache
from datetime import datetime, timezone

import numpy as np

from guard.gate.decision import Decision, Reason
from guard.gate.directory import GateDirectory
from guard.gate.facts import CameoFacts, GateFacts, PersonFacts, RequestFacts, Subject
from guard.gate.matching import Match, Query, Term, best_by_key, match_terms, open_image
from guard.gate.policy import Policy, restriction_terms

log = logging.getLogger("hallmark.gate")
# A mention is read on the NFKC form of the prompt (fullwidth "＠ａｌｉｃｅ" is "@alice"), and "@@alice" is one too: a
# backend that resolves mentions itself must not find one the gate did not see.
MENTION = re.compile(r"(?<![\w@])@+([a-z0-9_][a-z0-9_.]{1,31})", re.IGNORECASE)


@dataclass(frozen=True)
class GateRequest:
    requester_id: str
    prompt: str
    cameo_handles: list[str] = field(default_factory=list)
    commercial: bool = False
    reference_image: bytes | None = None  # an encoded image (PNG, JPEG, ...), checked against the works' images
    negative_prompt: str | None = None  # what the model is told to avoid (see _with_restrictions)
    now: datetime | None = None  # the time the policies see (default: now)


def mentioned_handles(request: GateRequest) -> list[str]:
    """Handles mentioned in the prompt plus those listed explicitly, lower-cased, in first-seen order."""
    seen: dict[str, None] = {}
    for handle in [*MENTION.findall(unicodedata.normalize("NFKC", request.prompt)), *request.cameo_handles]:
        seen.setdefault(handle.lower().lstrip("@").rstrip("."), None)
    return list(seen)


class Gate:
    def __init__(self, directory: GateDirectory, policy: Policy) -> None:
        self.directory = directory
        self.policy = policy

    @property
    def policy_version(self) -> str:
        return self.policy.version

    def check(self, request: GateRequest) -> Decision:
        try:
            return self.policy.decide(self.facts(request))
        except Exception as exc:  # fail closed: a check that cannot run is a denial, never a pass
            log.warning("gate check failed: %s", exc, exc_info=True)
            return Decision(
                allowed=False,
                reasons=[Reason("check_unavailable", f"A consent or policy check could not run ({exc}); "
                                "the request is denied until it can.")],
                policy_version=self.policy.version,
            )

    def facts(self, request: GateRequest) -> GateFacts:
        policy = self.policy
        image = open_image(request.reference_image) if request.reference_image is not None else None
        query = Query.of(request.prompt, image=image)
        facts = GateFacts(RequestFacts(
            requester_id=request.requester_id, requester_role=self.directory.account_role(request.requester_id),
            now=request.now or datetime.now(timezone.utc), commercial=request.commercial,
            has_reference_image=image is not None, prompt_chars=len(request.prompt)))

        for handle in mentioned_handles(request):
            cameo, restricted = _with_restrictions(self.directory.cameo(handle), request.prompt, policy,
                                                   request.negative_prompt)
            facts.cameos[handle] = cameo
            facts.subjects.append(Subject("Cameo", f"@{handle}", f"@{handle}", "mention", matches=restricted))

        margins = _margins(query, policy) if policy.match_settings.semantic else {}
        work_matches = best_by_key(self.directory.works_matcher().match(query))
        works = self.directory.works(work_matches, policy.thresholds)
        licences: dict[str, list] = {}
        for licence in self.directory.licences(request.requester_id, works):
            licences.setdefault(licence.work_id, []).append(licence)
        for work_id, kinds in work_matches.items():
            work = works.get(work_id)
            if work is None:
                continue
            facts.works[work_id] = work
            facts.subjects.append(_subject("Work", work_id, work.name, kinds, margins, licences.get(work_id, [])))

        persons = {person.id: person for person in policy.persons}
        for person_id, kinds in best_by_key(policy.persons_matcher().match(query)).items():
            person = persons[person_id]
            cameo = self.directory.person_cameo(person.cameo) if person.cameo else None
            facts.persons[person_id] = PersonFacts(person_id, person.name, policy.thresholds, cameo)
            facts.subjects.append(_subject("Person", person_id, person.name, kinds, margins, []))
        return facts


def _with_restrictions(cameo: CameoFacts | None, prompt: str, policy: Policy,
                       negative_prompt: str | None = None) -> tuple[CameoFacts | None, list[Match]]:
    """The cameo with how many of its owner's content restrictions the prompt matches (the matches are the
    evidence of a `cameo_restricted_content` denial). Same matcher as the works' names; no semantic matching, since
    a restriction is the owner's own short list of words.

    A negative prompt counts as a match whenever the owner restricted anything: it steers the model away from what
    it names, so it can reach restricted content without naming it ("clothes, swimsuit" undresses), and no word
    list can tell which steering does. Failing closed: such a cameo is used without one."""
    if cameo is None or not (cameo.restricted_terms or cameo.restricted_categories):
        return cameo, []
    terms = [_with_inflections(term) for term in
             restriction_terms(policy, cameo.restricted_terms, cameo.restricted_categories)]
    found = list(best_by_key(match_terms(request_text(prompt, cameo.handle.lower()), terms, settings=replace(
        policy.match_settings, semantic=False))).values())
    # An exact hit counts whatever its score (the owner's words are often everyday ones, which the works' matcher
    # scores down); a fuzzy one only above the policy's fuzzy threshold.
    matches = [max(kinds.values(), key=lambda m: m.score) for kinds in found
               if "exact" in kinds or max(m.score for m in kinds.values()) >= policy.thresholds.fuzzy]
    # Any one that is not blank: an emoji ("👙") or invisible characters may mean something to a model's tokenizer.
    if negative_prompt and negative_prompt.strip():
        matches.append(Match(key="negative_prompt", kind="negative_prompt", score=1.0,
                             matched="a negative prompt, with a cameo whose owner restricted content",
                             text=negative_prompt.strip()[:100]))
    return replace(cameo, restricted_matches=len(matches)), matches


def _with_inflections(term: Term) -> Term:
    """The term with its aliases' regular inflections as further aliases, so that a restriction on "punch" also
    covers "punching" and "punched", and one on "clowns" covers "clown". One word of an alias is inflected at a
    time ("political rallies"); the matcher then folds, de-spaces and fuzzes these like any alias."""
    aliases = dict.fromkeys(term.aliases)
    for alias in term.aliases:
        words = alias.split()
        for index, word in enumerate(words):
            for form in word_forms(word.lower()):
                aliases.setdefault(" ".join([*words[:index], form, *words[index + 1:]]), None)
    return replace(term, aliases=tuple(aliases))


VOWELS = frozenset("aeiou")
# A generated form is kept only if it is an English word at least this common (Zipf): English only, because the
# forms are English ones, and this rejects "punchs" or "heroins" (under 1), yet keeps rarer regular forms such as
# "gambles" (2.4), which the matcher's lexicon floor (2.5) would drop.
ENGLISH_FORM_ZIPF = 2.0
# A stem that is itself a common word ("beat", 4.4) is what an -ing/-ed form was made from, not stem + "e"
# ("beate"); rare strings that merely occur ("smok", 1.9) are not.
COMMON_STEM_ZIPF = 3.0


@lru_cache(maxsize=4096)
def word_forms(word: str) -> tuple[str, ...]:
    """Other forms of an owner's restriction word: its regular English inflections (`_inflections`), and for an
    inflected word its base and the base's other forms ("clowns" -> "clown", "smoking" -> "smoke", "smokes");
    only English words are kept, so no "danc" or "punchs".

    A base is taken off the owner's word only when it re-inflects to exactly that word, and, for -ing and -ed, only
    when it has at least 5 letters: short bases are too often other words ("herring" -> "her", "evening" -> "even",
    "wicked" -> "wick", "rated" -> "rat"), which made ordinary prompts restricted. Category lists name such short
    bases themselves ("bet", "beat").

    Written here rather than taken from a stemmer (Snowball): a stemmer maps a form to a stem that is often no word
    ("danc"), while the matcher compares whole aliases, fuzzily, so the forms themselves are what it needs."""
    if len(word) < 3 or not word.isascii() or not word.isalpha():
        return ()
    forms = set(_inflections(word))
    for base in _bases(word):
        if word in _inflections(base) and _english(base):
            forms |= {base, *_inflections(base)}
    return tuple(sorted(form for form in forms - {word} if _english(form)))


def _bases(word: str) -> set[str]:
    """Candidate bases of an inflected word, by undoing each regular ending (checked by the caller)."""
    bases: set[str] = set()
    if word.endswith("s"):  # clowns, kisses, rallies ("news" is no plural of "new": at least 4 letters)
        bases |= {base for base in (word[:-1], word[:-2], word[:-3] + "y") if len(base) >= 4}
    for ending, alternatives in (("ing", ("", "e")), ("ed", ("", "e"))):  # smoking -> smoke, rallied -> rally
        if not word.endswith(ending):
            continue
        stem = word[:-len(ending)]
        if len(stem) >= 2 and stem[-1] == stem[-2] and stem[-1] not in VOWELS | {"l", "s"}:
            candidates: tuple[str, ...] = (stem[:-1],)  # stabbing -> stab, never "stabbe" ("betting" -> "bette")
        elif _english(stem, COMMON_STEM_ZIPF):
            candidates = (stem,)  # "beat" explains "beating": never "beate"
        else:
            candidates = tuple(stem + tail for tail in alternatives) + ((stem[:-1] + "y",) if stem.endswith("i")
                                                                          else ())
        bases |= {base for base in candidates if len(base) >= 5}
    return bases


def _inflections(word: str) -> set[str]:
    """The regular -s/-es, -ed and -ing forms of `word` (not checked against any word list)."""
    consonant_y = word.endswith("y") and word[-2] not in VOWELS
    if consonant_y:
        plural = {word[:-1] + "ies"}  # rally -> rallies
    elif word.endswith(("s", "x", "z", "ch", "sh")):
        plural = {word + "es"}  # punch -> punches
    elif word.endswith("o"):
        plural = {word + "s", word + "es"}  # casinos, potatoes
    else:
        plural = {word + "s"}
    if word.endswith("e"):
        past = word + "d"  # vote -> voted
        ing = word[:-2] + "ying" if word.endswith("ie") else (
            word + "ing" if word.endswith(("ee", "ye", "oe")) else word[:-1] + "ing")  # voting, dying, seeing
    elif consonant_y:
        past, ing = word[:-1] + "ied", word + "ing"  # rallied, rallying
    elif _doubles_final_consonant(word):
        past, ing = word + word[-1] + "ed", word + word[-1] + "ing"  # stabbed, stabbing
    else:
        past, ing = word + "ed", word + "ing"
    return {*plural, past, ing}


def _doubles_final_consonant(word: str) -> bool:
    """One syllable ending consonant-vowel-consonant (stab, war, gun; not fight, beat, kill or visit)."""
    vowel_groups = sum(1 for i, char in enumerate(word) if char in VOWELS and (i == 0 or word[i - 1] not in VOWELS))
    return (vowel_groups == 1 and word[-1] not in VOWELS | {"w", "x", "y"} and word[-2] in VOWELS
            and word[-3] not in VOWELS)


def _english(form: str, floor: float = ENGLISH_FORM_ZIPF) -> bool:
    import wordfreq

    return wordfreq.zipf_frequency(form, "en") >= floor


def request_text(prompt: str, handle: str) -> str:
    """The prompt without its mentions of `handle`: a cameo's own handle is not content (a cameo called @wine_lover
    is not about alcohol). Other handles stay, since their words reach the model like any others: with every mention
    taken out, "@alice @naked.drunk on the beach" passed alice's restrictions on nudity and alcohol. (So a third
    cameo whose handle happens to name what alice restricts is refused beside her: failing closed.) They stay as the
    words they spell: without the "@", which the matcher would read as the leetspeak "a" ("abeer"), and with dots and
    underscores as spaces."""
    def replaced(mention: re.Match[str]) -> str:
        name = mention.group(1).lower().rstrip(".")
        return " " if name == handle else " " + re.sub(r"[._]+", " ", name) + " "

    return MENTION.sub(replaced, unicodedata.normalize("NFKC", prompt))


def _subject(entity_type: str, entity_id: str, name: str, kinds: dict[str, Match], margins: dict[str, float],
             licences: list) -> Subject:
    semantic = kinds.get("semantic")
    via = "reference_image" if set(kinds) == {"image"} else "prompt"
    return Subject(entity_type, entity_id, name, via,
                   scores={kind: match.score for kind, match in kinds.items()},
                   semantic_margin=semantic.score - margins.get(semantic.text or "", 0.0) if semantic else 0.0,
                   semantic_genericity=semantic.genericity if semantic else 0.0,
                   matches=list(kinds.values()), licences=licences)


def _margins(query: Query, policy: Policy) -> dict[str, float]:
    """For each chunk of the prompt, the best similarity to an everyday background prompt."""
    if not policy.background:
        return {}
    background = policy.background_vectors()
    best = (query.vectors @ background.T).max(axis=1)
    return {chunk: float(score) for chunk, score in zip(query.chunks, np.asarray(best).tolist())}
