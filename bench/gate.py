"""`python -m bench.gate`: the gate's accuracy on the evasion corpus and its decision time at scale.

1. Accuracy: the evasion corpus (tests/data/evasion_corpus.json) through the whole gate (normalization, all
   matchers, Cedar) against the sample works, per split and per technique, next to the v0 gate's check (the
   case-insensitive substring test of every opted-out term) on the same prompts.
2. Scale: a real SQLite registry of 20,000 works with 100,000 aliases and 20,000+ descriptions (the sample works plus
   synthetic ones whose descriptions share everyday words: mice, spiders, knights...), registered through the works
   repository with real embeddings. Gate decision time per prompt (normalization + exact/fuzzy automaton + semantic
   top-k + image + Cedar, through the registry directory) over the corpus prompts, p50/p95, with the semantic matcher
   on and off, next to the v0 check over the same 100,000 terms measured in the same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import sys
import tempfile
import time

from sqlmodel import select

from bench.gate_corpus import REQUESTER, Outcome, Scores, evaluate, load_corpus, memory_gate, sample_works
from bench.report import markdown_table, write_section
from guard.gate import Gate, GateRequest, Policy, RegistryDirectory, WorksIndexCache
from guard.gate.matching import embedder, to_bytes
from guard.gate.matching.semantic import prompt_chunks
from policies import POLICY_DIR
from registry import Accounts, Database, NewWork, Role, WorkAlias, WorkDescription, Works

SYLLABLES = ["ka", "zor", "vel", "mi", "ra", "tho", "quin", "bel", "dra", "nox", "fi", "lu", "gar", "sen", "tal",
             "rik", "mo", "ve", "sha", "drun", "pel", "cor", "ix", "ul", "yan", "bro", "kes", "tor", "am", "eth"]
ADJECTIVES = ["cheerful", "grumpy", "tiny", "giant", "shy", "brave", "sleepy", "clumsy", "wise", "mischievous",
              "silver", "golden", "purple", "striped", "spotted", "masked", "winged", "armoured", "glowing", "furry"]
CREATURES = ["mouse", "spider", "knight", "robot", "dragon", "fox", "rabbit", "bear", "wizard", "princess", "pirate",
             "astronaut", "cat", "dog", "duck", "owl", "detective", "ninja", "mermaid", "dinosaur"]
FEATURES = ["a red scarf", "round glasses", "a top hat", "big floppy ears", "a lightning tail", "blue overalls",
            "a golden crown", "a long cape", "rocket boots", "a wooden sword", "a bow tie", "green sneakers",
            "a tiny umbrella", "a backpack full of maps", "a glowing staff", "striped socks"]
PLACES = ["in a floating city", "under the sea", "on a distant moon", "in a candy kingdom", "in a haunted forest",
          "on a pirate island", "in a clockwork town", "at a magic academy", "in the desert", "in a snowy village"]


def synthetic_works(count: int, aliases_per_work: int, seed: int = 7) -> list[tuple[str, list[str], str]]:
    rng = random.Random(seed)
    names: set[str] = set()
    works = []

    def name() -> str:
        return " ".join("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()
                        for _ in range(rng.randint(1, 2)))

    while len(works) < count:
        primary = name()
        if primary in names:
            continue
        names.add(primary)
        aliases = [name() for _ in range(aliases_per_work - 1)]
        description = (f"a {rng.choice(ADJECTIVES)} {rng.choice(CREATURES)} with {rng.choice(FEATURES)} and "
                       f"{rng.choice(FEATURES)} who lives {rng.choice(PLACES)}")
        works.append((primary, aliases, description))
    return works


def build_registry(database: Database, corpus: dict, works: int, aliases_per_work: int) -> dict[str, float]:
    timings: dict[str, float] = {}
    with database.session() as session:
        accounts = Accounts(session)
        holder = accounts.create("bench-holder", Role.rights_holder).id
        accounts.create(REQUESTER, Role.creator)
    sample = sample_works(corpus)
    synthetic = synthetic_works(works - len(sample), aliases_per_work)
    texts = [d for w in sample for d in w.descriptions] + [d for _, _, d in synthetic]
    started = time.perf_counter()
    vectors = embedder().encode(texts, batch_size=128)
    timings["embed descriptions (s)"] = time.perf_counter() - started
    started = time.perf_counter()
    row = 0
    with database.session() as session:
        repository = Works(session)
        for work in sample:
            descriptions = [(d, to_bytes(vectors[row + i])) for i, d in enumerate(work.descriptions)]
            row += len(work.descriptions)
            repository.add(NewWork(holder_id=holder, name=work.name, aliases=work.aliases, descriptions=descriptions))
    for start in range(0, len(synthetic), 2000):
        with database.session() as session:
            repository = Works(session)
            for primary, aliases, description in synthetic[start:start + 2000]:
                repository.add(NewWork(holder_id=holder, name=primary, aliases=aliases,
                                       descriptions=[(description, to_bytes(vectors[row]))]))
                row += 1
        print(f"  registered {min(start + 2000, len(synthetic)) + len(sample)} works", file=sys.stderr)
    timings["register works (s)"] = time.perf_counter() - started
    return timings


def v0_check(terms: list[str], prompt: str) -> bool:
    """The v0 gate's opted-out-terms test, verbatim: allowed unless some term occurs, case-insensitively."""
    lowered = prompt.casefold()
    return not any(term and lowered.find(term.casefold()) >= 0 for term in terms)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def v0_scores(corpus: dict, terms: list[str]) -> tuple[float, float]:
    evasions = [p for p in corpus["prompts"] if p["label"] == "evasion" and not p["work"].startswith("person:")]
    benign = [p for p in corpus["prompts"] if p["label"] == "benign"]
    recall = sum(not v0_check(terms, p["prompt"]) for p in evasions) / len(evasions)
    fp = sum(not v0_check(terms, p["prompt"]) for p in benign) / len(benign)
    return recall, fp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--works", type=int, default=20_000)
    parser.add_argument("--aliases-per-work", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="passes over the corpus prompts for the timings")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()

    policy = Policy.load(POLICY_DIR)
    corpus = load_corpus()
    prompts = [p["prompt"] for p in corpus["prompts"]]

    # 1. accuracy against the sample works
    print("accuracy on the evasion corpus...", file=sys.stderr)
    small = evaluate(memory_gate(policy, corpus), corpus)
    sample_terms = [alias for w in sample_works(corpus) for alias in (w.name, *w.aliases)]
    v0_recall, v0_fp = v0_scores(corpus, sample_terms)

    # 2. scale
    with tempfile.TemporaryDirectory() as scratch:
        database = Database(f"sqlite:///{scratch}/bench.db")
        database.migrate()
        print(f"registering {args.works} works x {args.aliases_per_work} aliases...", file=sys.stderr)
        timings = build_registry(database, corpus, args.works, args.aliases_per_work)
        with database.session() as session:
            requester = Accounts(session).require_by_name(REQUESTER).id
            terms = list(session.exec(select(WorkAlias.alias)))
            descriptions = len(list(session.exec(select(WorkDescription.id))))
        results = {}
        for label, semantic in (("semantic on", True), ("semantic off", False)):
            settings = dataclasses.replace(policy.match_settings, semantic=semantic)
            variant = dataclasses.replace(policy, match_settings=settings, _cache={})
            cache = WorksIndexCache(settings, background=policy.background_vectors() if semantic else None)
            with database.session() as session:
                started = time.perf_counter()
                cache.matcher(Works(session))
                build = time.perf_counter() - started
            times: list[float] = []
            outcomes = []
            for repeat in range(args.repeats):
                for prompt in corpus["prompts"]:
                    with database.session() as session:
                        gate = Gate(RegistryDirectory(session, cache), variant)
                        started = time.perf_counter()
                        decision = gate.check(GateRequest(requester_id=requester, prompt=prompt["prompt"]))
                        times.append(time.perf_counter() - started)
                    if repeat == 0:
                        outcomes.append(Outcome(prompt, decision, times[-1]))
            results[label] = (build, times, Scores(outcomes))
            print(f"  {label}: p50 {percentile(times, .5)*1000:.1f} ms, p95 {percentile(times, .95)*1000:.1f} ms",
                  file=sys.stderr)
        encode_times = []  # the sentence-embedding forward pass alone, on the same prompts (what the semantic path costs)
        for _ in range(args.repeats):
            for prompt in prompts:
                started = time.perf_counter()
                embedder().encode(prompt_chunks(prompt))
                encode_times.append(time.perf_counter() - started)
        v0_times = []
        for _ in range(args.repeats):
            for prompt in prompts:
                started = time.perf_counter()
                v0_check(terms, prompt)
                v0_times.append(time.perf_counter() - started)
        database.dispose()

    big = results["semantic on"][2]
    rows = [["whole corpus", f"{len(small.evasions)} / {len(small.benign)}", f"{small.recall:.1%}",
             f"{small.false_positive_rate:.1%}"]]
    for name, title in (("dev", "dev split (tuned on)"), ("holdout", "held-out 1 (diagnosed after)"),
                        ("holdout2", "held-out 2 (never tuned on)")):
        part = small.split(name)
        rows.append([title, f"{len(part.evasions)} / {len(part.benign)}", f"{part.recall:.1%}",
                     f"{part.false_positive_rate:.1%}"])
    rows.append([f"whole corpus, {args.works:,} works in the registry", f"{len(big.evasions)} / {len(big.benign)}",
                 f"{big.recall:.1%}", f"{big.false_positive_rate:.1%}"])
    rows.append(["v0 gate (exact terms), works only", "", f"{v0_recall:.1%}", f"{v0_fp:.1%}"])
    accuracy = markdown_table(["prompts", "evasions / benign", "recall on evasions", "false positives"], rows)
    techniques = markdown_table(["technique", "caught", "of"],
                                [[k, c, n] for k, (c, n) in small.by_technique().items()])
    misses = "\n".join(f"- {o.prompt['label']}: `{o.prompt['prompt']}` → "
                       + (", ".join(f"{r.code} ({r.subject})" for r in o.decision.reasons) or "allowed")
                       for o in small.misses()) or "- none"

    scale_fp = "\n".join(f"- `{o.prompt['prompt']}` → " + ", ".join(
        f"{r.subject} ({(r.evidence or {}).get('kind')} {(r.evidence or {}).get('score')})" for r in o.decision.reasons)
        for o in big.benign if not o.decision.allowed) or "- none"
    base_p50 = percentile(v0_times, .5)
    base_p95 = percentile(v0_times, .95)
    timing_rows = []
    for label in ("semantic on", "semantic off"):
        build, times, _ = results[label]
        timing_rows.append([f"gate, {label}", f"{percentile(times, .5)*1000:.1f}", f"{percentile(times, .95)*1000:.1f}",
                            f"{max(times)*1000:.1f}", f"{percentile(times, .95) / base_p95:.1f}x", f"{build:.1f}"])
    timing_rows.append(["(model forward pass alone)", f"{percentile(encode_times, .5)*1000:.1f}",
                        f"{percentile(encode_times, .95)*1000:.1f}", f"{max(encode_times)*1000:.1f}",
                        f"{percentile(encode_times, .95) / base_p95:.1f}x", "-"])
    timing_rows.append(["v0 check (substring per term)", f"{base_p50*1000:.1f}", f"{base_p95*1000:.1f}",
                        f"{max(v0_times)*1000:.1f}", "1.0x", "-"])
    timing = markdown_table(["check", "p50 ms", "p95 ms", "max ms", "p95 vs v0", "index build s"], timing_rows)
    load = os.getloadavg()
    body = f"""Corpus: {len(corpus['prompts'])} labelled prompts (`tests/data/evasion_corpus.json`) against
{len(corpus['works'])} sample works and the protected-persons list. An evasion counts as caught only when the request
is denied *for the right work or person*. The dev split is what the matcher was developed on. Held-out 1 was written
after that; its misses were then diagnosed and the method changed (short-word windows, proper nouns of descriptions
as weak evidence). Held-out 2 was written after those changes; its first evaluation gave 100 % recall and 3.3 %
false positives (1 of 30); a later change made for the 20,000-work registry (a broader word list for near-misses,
and the description-genericity rule) was checked against all splits, so held-out 2 is no longer untouched either.
The corpus was written by the matcher's author. Targets: recall >= 95 %, false positives <= 2 %.

{accuracy}

Per technique (whole corpus, sample registry):

{techniques}

Misses and false positives (whole corpus, sample registry):

{misses}

Scale: a SQLite registry of {args.works:,} works, {len(terms):,} aliases and {descriptions:,} description embeddings
(registered through the works repository; embedding the descriptions took
{timings['embed descriptions (s)']:.0f} s, registering {timings['register works (s)']:.0f} s). Decision time of one
`Gate.check` (normalization, exact + fuzzy automaton, semantic top-k, image, protected persons, licences, Cedar,
registry reads) over the {len(prompts)} corpus prompts x {args.repeats}, next to the v0 check over the same
{len(terms):,} terms in the same run. Target: p95 <= 50 ms with the semantic matcher on. Load average during the run:
{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} cores (shared machine).

{timing}

False positives with the {args.works:,}-work registry (the synthetic works' descriptions are built from everyday
words on purpose, e.g. "a cheerful mouse with big floppy ears who lives in a candy kingdom", so ordinary prompts
meet them):

{scale_fp}
"""
    print(body)
    if not args.no_write:
        write_section("gate", "Gate: evasion corpus and decision time", "python -m bench.gate", body)


if __name__ == "__main__":
    main()
