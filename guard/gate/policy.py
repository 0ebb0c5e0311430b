"""Policy-as-code: the Cedar policies, schema and lists in policies/, loaded and checked once, then used to decide.

Loading validates everything and refuses with the file and line of the first problem: each policy statement is
parsed on its own (Cedar's parser reports no positions, so splitting the files is how a syntax error is located) and
validated against the schema; every forbid rule must say which reason code and message it stands for (`@reason`,
`@message`), every `@id` must be unique, and every `@obligation` must name an obligation the pipeline enforces.

Deciding: the gate's facts become Cedar entities and one request per subject (see facts.py), evaluated in one batch
against the pre-parsed policy set. Forbid overrides permit. A denied subject yields one reason per forbid rule that
fired (its `@reason` code and `@message`, with the subject named and the match as evidence); an allowed one yields
the obligations of the permit rules that fired. Any evaluation error is raised (the gate turns it into a denial):
Cedar skips a rule whose condition errors, which for a forbid rule would be a silent pass."""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cedarpy

from guard.errors import HallmarkError
from guard.gate.decision import Decision, Reason
from guard.gate.facts import (CameoFacts, GateFacts, LicenceFacts, PersonFacts, RequestFacts, Subject, Thresholds,
                              WorkFacts)
from guard.gate.matching import Match, MatchSettings, Query, Term, TermMatcher
from guard.gate.policy_version import policy_version

SCHEMA_FILE = "schema.cedarschema"
CASES_FILE = "cases.toml"
# The forbid rules every deployment must have (id -> reason code, and the file that ships it). Cedar denies by default
# but these rules are what stops an allowed request: without one, its check silently passes. An operator may tighten
# them, add rules, rename files; removing or renaming one is refused.
CORE_RULES: dict[str, tuple[str, str]] = {
    "cameo.unknown": ("cameo_unknown", "cameos.cedar"),
    "cameo.revoked": ("cameo_revoked", "cameos.cedar"),
    "cameo.not_verified": ("cameo_not_verified", "cameos.cedar"),
    "cameo.expired": ("cameo_expired", "cameos.cedar"),
    "cameo.not_permitted": ("cameo_not_permitted", "cameos.cedar"),
    "cameo.restricted_content": ("cameo_restricted_content", "cameos.cedar"),
    "person.protected": ("protected_person", "persons.cedar"),
    "work.opted_out": ("opted_out_work", "works.cedar"),
    "work.unlicensed": ("unlicensed_work", "works.cedar"),
}
OBLIGATION_KINDS = {"visible_mark": {"min_opacity": (0.0, 1.0), "min_scale": (0.1, 4.0)}}


class PolicyError(HallmarkError):
    """The policy files are invalid; Hallmark refuses to start on them."""

    code = "policy_invalid"
    status = 500


class PolicyEvaluationError(RuntimeError):
    """Cedar could not evaluate a request (the gate denies with check_unavailable)."""


@dataclass(frozen=True)
class Rule:
    id: str
    effect: str  # permit | forbid
    file: str
    line: int
    reason: str | None
    message: str | None
    obligations: tuple[str, ...]


@dataclass(frozen=True)
class ProtectedPerson:
    id: str
    name: str
    aliases: tuple[str, ...]
    descriptions: tuple[str, ...]
    cameo: str | None
    distinctive_names: tuple[str, ...] = ()  # one word that names the person on its own ("Obama"), see PersonsMatcher
    capitalised_names: tuple[str, ...] = ()  # one word that names them only when written as a name ("Musk")

    @property
    def distinctive_forms(self) -> tuple[str, ...]:
        return (*self.distinctive_names, *family_plurals(self.distinctive_names))

    @property
    def capitalised_forms(self) -> tuple[str, ...]:
        return (*self.capitalised_names, *family_plurals(self.capitalised_names))

    def term(self) -> Term:
        return Term(self.id, aliases=(self.name, *self.aliases, *self.distinctive_forms, *self.capitalised_forms),
                    descriptions=self.descriptions)


def family_plurals(names: tuple[str, ...]) -> tuple[str, ...]:
    """The plurals of single-word names ("the Obamas", "the Joneses"), which name the same people and are held to
    the same rules as the names. Left out, "the Obamas waving" passed: a near miss on "Obama" that is itself a word
    in the matcher's list ("obamas") is dropped as a different word."""
    return tuple(name + ("es" if name.lower().endswith(("s", "x", "z", "ch", "sh")) else "s") for name in names)


@dataclass(frozen=True)
class PersonsMatcher:
    """The protected persons' matcher, with the operator's word on single-word names. The general matcher scores a
    plainly typed alias that is an everyday word (in the model's word list) as weak evidence, which is right for a
    work called "Frozen" but let "Obama walking his dog" through, and scores any other word in full, which denies "a
    musk ox". So an exact hit on a `distinctive_names` word counts in full however it is written, and one on a
    `capitalised_names` word counts in full only where it is written as a name (see `_written_as_a_name`); anywhere
    else, and as a near miss ("Musky", "A musk"), it is weak evidence only."""

    matcher: TermMatcher
    distinctive: frozenset[tuple[str, str]]  # (person id, name as listed)
    capitalised: frozenset[tuple[str, str]]
    weak_score: float

    def match(self, query: Query) -> list[Match]:
        return [self._rescored(m, query.prompt) for m in self.matcher.match(query)]

    def _rescored(self, match: Match, prompt: str) -> Match:
        name = (match.key, match.matched)
        if match.kind == "exact" and name in self.distinctive:
            return replace(match, score=1.0)
        if name in self.capitalised:
            if match.kind == "exact" and _written_as_a_name(prompt, match.span, match.matched):
                return replace(match, score=1.0)
            return replace(match, score=min(match.score, self.weak_score))
        return match


# Characters after which a word starts a sentence (a line break does too).
SENTENCE_ENDS = ".!?"
# What may stand between a sentence's end and its first word: an opening quote or bracket, a list bullet. Not a
# colon, a dash or a quote inside a sentence ('a photo of "Musk"', 'Portrait: Musk'): those are no sentence start.
SENTENCE_LEADS = '"\'(\u201c\u2018[-*\u2022 '


def _written_as_a_name(prompt: str, span: tuple[int, int] | None, name: str) -> bool:
    """Whether an exact hit on a `capitalised_names` word ("Musk") names the person rather than the everyday word
    ("musk ox", "Musk melon"). The letter case judged is that of the name's own characters (a fuzzy span such as
    "A musk" never gets here); the rest of the prompt only says whether a capital there means anything:

    - disguised (anything but its plain letters in some letter case: "Mu$k", "M u s k", a Cyrillic "М"): a name,
      since nobody disguises the word for a scent;
    - otherwise only a capital that carries information counts: the word is capitalised (or in capitals), not the
      first word of a sentence (where every word is capitalised: "Musk ox grazing", and so "Musk on Mars" is not
      caught by this name alone), and the prompt has some other word starting in lower case (in an all-capitals
      or Title Case prompt, "A Musk Ox In The Snow", letter case says nothing)."""
    if span is None:
        return False
    start, end = span
    typed = prompt[start:end]
    if typed.casefold() != name.casefold():
        return True
    if not typed[:1].isupper() or _starts_sentence(prompt, start):
        return False
    rest = prompt[:start] + " " + prompt[end:]
    return any(word[:1].islower() for word in re.findall(r"[^\W\d_]+", rest) if len(word) > 1)


def _starts_sentence(prompt: str, start: int) -> bool:
    """Whether the word at `start` is the first of a sentence: nothing but quotes, brackets or a bullet between it
    and the prompt's start, a line break, or a sentence's end."""
    before = prompt[:start]
    lead = before.rstrip(SENTENCE_LEADS + "\t")
    return not lead or lead[-1] in SENTENCE_ENDS + "\n\r"


@dataclass
class Policy:
    """Everything in policies/, loaded and validated."""

    directory: Path
    version: str
    rules: dict[str, Rule]
    policy_set: Any
    schema: Any
    obligations: dict[str, dict[str, Any]]
    match_settings: MatchSettings
    thresholds: Thresholds
    persons: list[ProtectedPerson]
    background: list[str]
    categories: dict[str, tuple[str, ...]] = field(default_factory=dict)  # content category -> its words
    _cache: dict[str, Any] = field(default_factory=dict)

    # --- loading
    @classmethod
    def load(cls, directory: Path) -> "Policy":
        directory = Path(directory)
        if not directory.is_dir():
            raise PolicyError(f"The policy directory {directory} does not exist.",
                              hint="Set HALLMARK_POLICY_DIR to the directory holding the .cedar files.")
        schema_path = directory / SCHEMA_FILE
        if not schema_path.is_file():
            raise PolicyError(f"{schema_path}: the Cedar schema is missing.")
        schema_text = schema_path.read_text(encoding="utf-8")
        try:
            schema = cedarpy.Schema.from_str(schema_text)
        except ValueError as exc:
            raise PolicyError(f"{schema_path}: the Cedar schema does not parse: {exc}") from exc
        obligations = _load_obligations(directory / "obligations.toml")
        rules: dict[str, Rule] = {}
        static: dict[str, Any] = {}
        files = sorted(directory.glob("*.cedar"))
        if not files:
            raise PolicyError(f"{directory}: there are no .cedar policy files.")
        for path in files:
            for line, text in split_statements(path.read_text(encoding="utf-8")):
                rule, body = _load_rule(path, line, text, schema_text, obligations)
                if rule.id in rules:
                    other = rules[rule.id]
                    raise PolicyError(f"{path.name}:{line}: the policy id {rule.id!r} is already used at "
                                      f"{other.file}:{other.line}.")
                rules[rule.id] = rule
                static[rule.id] = body
        _require_core_rules(directory, rules)
        policy_set = cedarpy.PolicySet.from_json_str(json.dumps(
            {"staticPolicies": static, "templates": {}, "templateLinks": []}))
        match_settings, thresholds = _load_matching(directory / "matching.toml")
        return cls(directory=directory, version=policy_version(directory), rules=rules, policy_set=policy_set,
                   schema=schema, obligations=obligations, match_settings=match_settings, thresholds=thresholds,
                   persons=_load_persons(directory / "protected_persons.toml"),
                   background=_load_lines(directory / "background_prompts.txt"),
                   categories=_load_categories(directory / "content_categories.toml"))

    # --- deciding
    def decide(self, facts: GateFacts) -> Decision:
        pairs = facts.requests()
        results = cedarpy.is_authorized_batch([request for _, request in pairs], self.policy_set,
                                              facts.entities(), schema=self.schema)
        if len(results) != len(pairs):
            raise PolicyEvaluationError("Cedar answered a different number of requests than it was asked")
        by_subject: dict[int, list[Any]] = {}
        for (index, _), result in zip(pairs, results):
            if result.diagnostics.errors:
                raise PolicyEvaluationError("; ".join(str(e) for e in result.diagnostics.errors))
            if result.decision not in (cedarpy.Decision.Allow, cedarpy.Decision.Deny):
                raise PolicyEvaluationError(f"Cedar gave no decision ({result.decision})")
            by_subject.setdefault(index, []).append(result)
        reasons: list[Reason] = []
        obligations: list[dict[str, Any]] = []
        consented: list[str] = []
        for index, outcomes in sorted(by_subject.items()):
            subject = facts.subjects[index] if index >= 0 else None
            allowing = next((o for o in outcomes if o.allowed), None)
            if allowing is None:
                reasons += self._reasons(outcomes[0], subject)
                continue
            for policy_id in allowing.diagnostics.reasons:
                for name in self.rules[policy_id].obligations:
                    obligation = {"name": name, **self.obligations[name]}
                    if subject is not None:
                        obligation["subject"] = subject.label
                    if obligation not in obligations:
                        obligations.append(obligation)
            if subject is not None and subject.type == "Cameo" and subject.via == "mention":
                cameo = facts.cameos.get(subject.id.lstrip("@"))
                if cameo is not None:
                    consented.append(cameo.id)
        allowed = not reasons
        return Decision(allowed=allowed, reasons=reasons, policy_version=self.version,
                        obligations=obligations if allowed else [], cameo_ids=consented if allowed else [])

    def _reasons(self, outcome: Any, subject: Subject | None) -> list[Reason]:
        out: list[Reason] = []
        for policy_id in outcome.diagnostics.reasons:
            rule = self.rules[policy_id]
            if rule.effect != "forbid":
                continue
            fields = {"name": _display_name(subject), "via": subject.via if subject else "", "policy": rule.id}
            message = (rule.message or rule.id).format_map(_Blank(fields))
            evidence = subject.evidence() if subject is not None else None
            if evidence is not None:
                evidence = {**evidence, "policy": rule.id}
            out.append(Reason(rule.reason or rule.id, message, subject=subject.label if subject else None,
                              evidence=evidence))
        if not out:  # denied with no forbid rule firing: nothing permitted it (default deny)
            out.append(Reason("not_permitted", "No policy permits this request.",
                              subject=subject.label if subject else None))
        return out

    # --- derived data, built once
    def names_only(self) -> "Policy":
        """This policy with the semantic matcher off (the prompt cases use it)."""
        if "names_only" not in self._cache:
            self._cache["names_only"] = replace(self, match_settings=replace(self.match_settings, semantic=False),
                                                _cache={})
        return self._cache["names_only"]

    def background_vectors(self) -> Any:
        from guard.gate.matching.semantic import encode_fixed

        return encode_fixed(tuple(self.background))

    def persons_matcher(self) -> PersonsMatcher:
        if "persons" not in self._cache:
            semantic = self.match_settings.semantic  # without it, nothing needs the model loaded
            terms = [p.term() for p in self.persons]
            if semantic:
                from guard.gate.matching.semantic import encode_fixed

                terms = [replace(t, description_vectors=encode_fixed(t.descriptions) if t.descriptions else None)
                         for t in terms]
            background = self.background_vectors() if semantic and self.background else None
            self._cache["persons"] = PersonsMatcher(
                TermMatcher(terms, self.match_settings, background=background),
                frozenset((p.id, name) for p in self.persons for name in p.distinctive_forms),
                frozenset((p.id, name) for p in self.persons for name in p.capitalised_forms),
                self.match_settings.weak_alias_score)
        return self._cache["persons"]


class _Blank(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _display_name(subject: Subject | None) -> str:
    if subject is None:
        return "this request"
    return subject.name if subject.type == "Cameo" else f"\u201c{subject.name}\u201d"


# --- loading helpers ------------------------------------------------------------------------------------------
def split_statements(text: str) -> list[tuple[int, str]]:
    """Split Cedar policy text into statements (line of their first token, text), skipping strings and comments."""
    statements: list[tuple[int, str]] = []
    start = 0
    first_line: int | None = None
    line = 1
    i = 0
    in_string = False
    while i < len(text):
        char = text[i]
        if in_string:
            if char == "\\":
                i += 2
                continue
            if char == '"':
                in_string = False
            elif char == "\n":
                line += 1
        elif char == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif char == '"':
            in_string = True
            first_line = first_line or line
        elif char == ";":
            statements.append((first_line or line, text[start:i + 1]))
            start, first_line = i + 1, None
        elif char == "\n":
            line += 1
        elif not char.isspace():
            first_line = first_line or line
        i += 1
    if text[start:].strip() and first_line is not None:
        statements.append((first_line, text[start:]))  # no closing semicolon: Cedar reports it
    return statements


def _load_rule(path: Path, line: int, text: str, schema_text: str,
               obligations: dict[str, dict[str, Any]]) -> tuple[Rule, Any]:
    where = f"{path.name}:{line}"
    try:
        parsed = json.loads(cedarpy.policies_to_json_str(text))
    except ValueError as exc:
        raise PolicyError(f"{where}: syntax error: {exc}",
                          hint=f"Fix the policy starting at line {line} of {path}.") from exc
    bodies = list(parsed.get("staticPolicies", {}).values())
    if parsed.get("templates"):
        raise PolicyError(f"{where}: policy templates are not supported here.")
    if len(bodies) != 1:
        raise PolicyError(f"{where}: expected one policy statement, found {len(bodies)}.")
    body = bodies[0]
    validation = cedarpy.validate_policies(text, schema_text)
    if not validation.validation_passed:
        errors = "; ".join(error.error for error in validation.errors)
        raise PolicyError(f"{where}: does not match the schema: {errors}",
                          hint=f"Compare with {path.parent / SCHEMA_FILE}.")
    annotations: dict[str, str] = body.get("annotations", {}) or {}
    rule_id = annotations.get("id")
    if not rule_id:
        raise PolicyError(f"{where}: every policy needs an @id(\"...\") annotation (it names the rule in reasons).")
    effect = body["effect"]
    reason = annotations.get("reason")
    message = annotations.get("message")
    if effect == "forbid" and (not reason or not message):
        raise PolicyError(f"{where}: the forbid rule {rule_id!r} needs @reason(\"code\") and @message(\"...\").")
    if reason and not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", reason):
        raise PolicyError(f"{where}: @reason({reason!r}) must be a snake_case code.")
    names = tuple(name.strip() for name in (annotations.get("obligation") or "").split(",") if name.strip())
    for name in names:
        if name not in obligations:
            raise PolicyError(f"{where}: @obligation({name!r}) is not defined in obligations.toml.")
    return Rule(rule_id, effect, path.name, line, reason, message, names), body


def _require_core_rules(directory: Path, rules: dict[str, Rule]) -> None:
    missing: dict[str, list[str]] = {}
    for rule_id, (reason, file) in CORE_RULES.items():
        rule = rules.get(rule_id)
        if rule is None:
            missing.setdefault(file, []).append(rule_id)
        elif rule.effect != "forbid" or rule.reason != reason:
            missing.setdefault(file, []).append(f"{rule_id} (found in {rule.file}:{rule.line}, but it must be a "
                                                f"forbid rule with @reason(\"{reason}\"))")
    if missing:
        listed = "; ".join(f"{', '.join(ids)} (shipped in {file})" for file, ids in missing.items())
        raise PolicyError(f"{directory}: core forbid rules are missing, so their checks would pass silently: "
                          f"{listed}.",
                          hint="Restore them from the packaged policies/; a core rule is found by its @id and keeps "
                               "its @reason (add conditions to tighten it, or add rules of your own).")


def _load_obligations(path: Path) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        return {}
    data = _toml(path)
    out: dict[str, dict[str, Any]] = {}
    for name, spec in data.items():
        if not isinstance(spec, dict) or spec.get("kind") not in OBLIGATION_KINDS:
            raise PolicyError(f"{path.name}: obligation {name!r} needs a kind among {sorted(OBLIGATION_KINDS)}.")
        for key, value in spec.items():
            if key == "kind":
                continue
            bounds = OBLIGATION_KINDS[spec["kind"]].get(key)
            if bounds is None or not isinstance(value, (int, float)) or not bounds[0] <= value <= bounds[1]:
                raise PolicyError(f"{path.name}: obligation {name!r}: {key} = {value!r} is not allowed "
                                  f"(known: {sorted(OBLIGATION_KINDS[spec['kind']])}).")
        out[name] = dict(spec)
    return out


def _load_matching(path: Path) -> tuple[MatchSettings, Thresholds]:
    data = _toml(path) if path.is_file() else {}
    candidates = data.get("candidates", {})
    thresholds = data.get("thresholds", {})
    try:
        settings = MatchSettings(
            semantic_floor=float(candidates.get("semantic_floor", 0.40)),
            semantic_top_k=int(candidates.get("semantic_top_k", 8)),
            image_floor=float(candidates.get("image_floor", 0.70)),
            weak_alias_score=float(candidates.get("weak_alias_score", 0.6)),
        )
        limits = Thresholds().replace(**{("generic" if k == "generic_margin" else k): float(v)
                                         for k, v in thresholds.items()})
    except (TypeError, ValueError) as exc:
        raise PolicyError(f"{path.name}: {exc}") from exc
    return settings, limits


def _load_persons(path: Path) -> list[ProtectedPerson]:
    if not path.is_file():  # no list would let every public figure through: fail closed
        raise PolicyError(f"{path}: the protected persons list is missing.",
                          hint="Restore protected_persons.toml (an empty list is a file with no [[person]] entry).")
    persons: list[ProtectedPerson] = []
    seen: set[str] = set()
    for number, entry in enumerate(_toml(path).get("person", []), start=1):
        if not isinstance(entry, dict) or not entry.get("id") or not entry.get("name"):
            raise PolicyError(f"{path.name}: person #{number} needs an id and a name.")
        if entry["id"] in seen:
            raise PolicyError(f"{path.name}: person id {entry['id']!r} appears twice.")
        seen.add(entry["id"])
        where = f"{path.name}: person {entry['id']!r}"
        single = {key: _strings(entry, key, where) for key in ("distinctive_names", "capitalised_names")}
        for key, names in single.items():
            for name in names:
                if len(name.split()) != 1:
                    raise PolicyError(f"{where}: {key} holds single words; {name!r} is not one.",
                                      hint="Put names of several words under `aliases`.")
        persons.append(ProtectedPerson(str(entry["id"]), str(entry["name"]), _strings(entry, "aliases", where),
                                       _strings(entry, "descriptions", where),
                                       str(entry["cameo"]).lstrip("@").lower() if entry.get("cameo") else None,
                                       single["distinctive_names"], single["capitalised_names"]))
    return persons


def _strings(entry: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    values = entry.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
        raise PolicyError(f"{where}: `{key}` must be a list of non-empty strings.")
    return tuple(v.strip() for v in values)


def _load_categories(path: Path) -> dict[str, tuple[str, ...]]:
    if not path.is_file():  # a cameo owner's restricted categories would match only their own names: fail closed
        raise PolicyError(f"{path}: the content categories list is missing.",
                          hint="Restore content_categories.toml from the packaged policies/.")
    categories: dict[str, tuple[str, ...]] = {}
    for name, entry in _toml(path).get("category", {}).items():
        words = entry.get("words") if isinstance(entry, dict) else None
        if not isinstance(words, list) or not all(isinstance(w, str) and w.strip() for w in words):
            raise PolicyError(f"{path.name}: category {name!r} needs `words`, a list of non-empty strings.")
        categories[name.lower()] = tuple(words)
    return categories


def restriction_terms(policy: "Policy", terms: tuple[str, ...], categories: tuple[str, ...]) -> list[Term]:
    """A cameo owner's content restrictions as matcher terms: each term on its own; each category as its name plus
    its words (an unknown category still matches its own name)."""
    out = [Term(key=f"term:{term}", aliases=(term,)) for term in terms]
    out += [Term(key=f"category:{name}", aliases=(name, *policy.categories.get(name.lower(), ())))
            for name in categories]
    return out


def _load_lines(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"{path.name}: {exc}") from exc


# --- the policy test cases (policies/cases.toml) ----------------------------------------------------------------
@dataclass(frozen=True)
class CaseResult:
    name: str
    passed: bool
    expected: dict[str, Any]
    got: dict[str, Any]


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def case_facts(case: dict[str, Any], policy: Policy) -> GateFacts:
    """Facts from one case of the table: works, cameos and persons given inline with their scores, or, for a case
    with a `prompt`, the protected persons that prompt names (see prompt_facts)."""
    if "prompt" in case:
        return prompt_facts(case, policy)
    request = RequestFacts(requester_id=str(case.get("requester", "requester")),
                           requester_role=str(case.get("requester_role", "creator")),
                           now=_time(case.get("now")) or datetime(2026, 6, 1, tzinfo=timezone.utc),
                           commercial=bool(case.get("commercial", False)),
                           has_reference_image=bool(case.get("has_reference_image", False)),
                           prompt_chars=int(case.get("prompt_chars", 40)))
    facts = GateFacts(request)
    cameos: dict[str, CameoFacts] = {}
    for spec in case.get("cameo", []):
        handle = str(spec["handle"]).lstrip("@").lower()
        if spec.get("registered", True):
            cameos[handle] = CameoFacts(id=f"cameo-{handle}", handle=handle, owner_id=str(spec.get("owner", handle)),
                                        visibility=str(spec.get("visibility", "only_me")),
                                        approved_accounts=frozenset(spec.get("approved", [])),
                                        revoked=bool(spec.get("revoked", False)),
                                        verified=bool(spec.get("verified", False)),
                                        expired=bool(spec.get("expired", False)),
                                        restricted_matches=int(spec.get("restricted_matches", 0)))
        if spec.get("mentioned", True):
            facts.cameos[handle] = cameos.get(handle)
            facts.subjects.append(Subject("Cameo", f"@{handle}", f"@{handle}", "mention"))
    for spec in case.get("work", []):
        work = WorkFacts(id=str(spec["id"]), name=str(spec.get("name", spec["id"])),
                         kind=str(spec.get("kind", "character")), mode=str(spec.get("mode", "opt_out")),
                         holder_id=str(spec.get("holder", "holder")),
                         thresholds=policy.thresholds.replace(**spec.get("thresholds", {})),
                         valid_from=_time(spec.get("valid_from")), valid_until=_time(spec.get("valid_until")))
        facts.works[work.id] = work
        licences = [LicenceFacts(id=f"licence-{i}", work_id=work.id,
                                 non_commercial=bool(l.get("non_commercial", False)),
                                 starts_at=_time(l.get("starts_at")), ends_at=_time(l.get("ends_at")))
                    for i, l in enumerate(spec.get("licences", []))]
        facts.subjects.append(Subject("Work", work.id, work.name, str(spec.get("via", "prompt")),
                                      scores=dict(spec.get("scores", {})),
                                      semantic_margin=float(spec.get("semantic_margin", 0.0)),
                                      semantic_genericity=float(spec.get("semantic_genericity", 0.0)),
                                      licences=licences))
    for spec in case.get("person", []):
        cameo_handle = spec.get("cameo")
        person = PersonFacts(id=str(spec["id"]), name=str(spec.get("name", spec["id"])),
                             thresholds=policy.thresholds.replace(**spec.get("thresholds", {})),
                             cameo=cameos.get(str(cameo_handle).lstrip("@").lower()) if cameo_handle else None)
        facts.persons[person.id] = person
        facts.subjects.append(Subject("Person", person.id, person.name, str(spec.get("via", "prompt")),
                                      scores=dict(spec.get("scores", {})),
                                      semantic_margin=float(spec.get("semantic_margin", 0.0))))
    return facts


def prompt_facts(case: dict[str, Any], policy: Policy) -> GateFacts:
    """The gate's own facts for a case's `prompt`, with no works or cameos registered: the protected persons it names.
    Names and aliases only (exact and fuzzy matching, no sentence-embedding model), so that running the cases at
    start-up stays fast and does not depend on the model; paraphrases are tested by the test suite."""
    from guard.gate.gate import Gate, GateRequest  # the gate imports this module
    from guard.gate.memory import MemoryDirectory

    if any(key in case for key in ("work", "person", "cameo")):
        raise ValueError("a case with a prompt takes its facts from the prompt; drop its work/person/cameo tables")
    names_only = policy.names_only()
    request = GateRequest(str(case.get("requester", "requester")), str(case["prompt"]),
                          now=_time(case.get("now")) or datetime(2026, 6, 1, tzinfo=timezone.utc))
    return Gate(MemoryDirectory(settings=names_only.match_settings), names_only).facts(request)


def run_cases(policy: Policy, path: Path | None = None) -> list[CaseResult]:
    path = path or policy.directory / CASES_FILE
    if not path.is_file():
        return []
    results: list[CaseResult] = []
    for number, case in _expand_prompts(_toml(path).get("case", [])):
        name = str(case.get("name", f"case {number}"))
        expected = {"allowed": bool(case.get("expect_allowed")),
                    "reasons": sorted(case.get("expect_reasons", []))}
        if "expect_obligations" in case:
            expected["obligations"] = sorted(case["expect_obligations"])
        try:
            decision = policy.decide(case_facts(case, policy))
            got: dict[str, Any] = {"allowed": decision.allowed,
                                   "reasons": sorted(reason.code for reason in decision.reasons)}
            if "obligations" in expected:
                got["obligations"] = sorted(o["name"] for o in decision.obligations)
        except (KeyError, ValueError, TypeError, PolicyEvaluationError) as exc:
            got = {"error": f"{type(exc).__name__}: {exc}"}
        results.append(CaseResult(name, got == expected, expected, got))
    return results


def _expand_prompts(cases: list[Any]) -> Iterable[tuple[int, dict[str, Any]]]:
    """(number, case), with a case of several `prompts` given as one case per prompt, named after it."""
    for number, case in enumerate(cases, start=1):
        if not isinstance(case, dict) or "prompts" not in case:
            yield number, case
            continue
        base = {key: value for key, value in case.items() if key != "prompts"}
        for prompt in case["prompts"]:
            yield number, {**base, "prompt": prompt, "name": f"{case.get('name', f'case {number}')}: {prompt!r}"}


def check(directory: Path) -> tuple[Policy, list[CaseResult]]:
    """Load and validate the policies, then run their case table (what `hallmark policy check` does)."""
    policy = Policy.load(directory)
    return policy, run_cases(_require_cases_file(policy))


def require_passing_cases(policy: Policy) -> list[CaseResult]:
    """Run the policies' own case table and refuse (PolicyError) when a case fails: a server must not start on rules
    that contradict their own tests (a weakened forbid rule, a removed alias)."""
    results = run_cases(_require_cases_file(policy))
    failed = [result for result in results if not result.passed]
    if failed:
        shown = "; ".join(f"{r.name!r}: expected {_outcome(r.expected)}, got {_outcome(r.got)}" for r in failed[:5])
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        raise PolicyError(f"{policy.directory / CASES_FILE}: {len(failed)} of {len(results)} policy test cases fail, "
                          f"so Hallmark does not start on these policies: {shown}{more}.",
                          hint=f"Run `hallmark policy check --dir {policy.directory}` to see every failure, then fix "
                               "the policies or the case.")
    return results


def _require_cases_file(policy: Policy) -> Policy:
    if not (policy.directory / CASES_FILE).is_file():
        raise PolicyError(f"{policy.directory / CASES_FILE}: the policy test cases are missing; policies are used only "
                          "once their cases pass.", hint="Restore cases.toml from the packaged policies/.")
    return policy


def _outcome(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"an error ({result['error']})"
    verdict = "allowed" if result["allowed"] else "denied"
    reasons = result.get("reasons") or []
    return f"{verdict} ({', '.join(reasons)})" if reasons else verdict


def iter_forbid_reasons(policy: Policy) -> Iterable[str]:
    return sorted({rule.reason for rule in policy.rules.values() if rule.reason})
