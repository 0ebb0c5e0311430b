"""A cameo owner's content restrictions (terms and categories), set through the API and enforced by the gate for
every requester, on SQLite and PostgreSQL: a permitted cameo in restricted content is denied with the matched words
as evidence, the same cameo elsewhere is allowed, and a generation request is refused the same way."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from guard.gate import GateRequest, Policy
from guard.gate.facts import CameoFacts
from guard.gate.gate import Gate, mentioned_handles, word_forms
from guard.gate.memory import MemoryDirectory
from policies import POLICY_DIR
from registry import Accounts, Cameo, Cameos, CameoStatus, Database, Visibility
from tests.conftest import generation_count


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _account_with_a_verified_cameo(initialized, owner: str, handle: str,  # type: ignore[no-untyped-def]
                                   evidence: dict | None = None) -> tuple[str, str]:
    """A new account's API key and its self-service cameo, verified straight in the database (the face side of
    registration is tested in test_cameos.py; here only what the gate does with the cameo matters)."""
    database = Database(initialized.settings.resolved_database_url)
    try:
        with database.session() as session:
            account = Accounts(session).create(owner)
            key = Accounts(session).issue_key(account)
            cameos = Cameos(session)
            cameo = cameos.mark_verified(cameos.create(handle, account.id, Visibility.everyone),
                                         CameoStatus.verified, evidence or {})
            return key, cameo.id
    finally:
        database.dispose()


def test_owner_restrictions_deny_matching_prompts_for_everyone(initialized) -> None:  # type: ignore[no-untyped-def]
    database = Database(initialized.settings.resolved_database_url)
    with database.session() as session:
        accounts = Accounts(session)
        alice, bob = accounts.create("alice"), accounts.create("bob")
        alice_key, bob_key = accounts.issue_key(alice), accounts.issue_key(bob)
        cameos = Cameos(session)
        # The face side of registration is tested in test_cameos.py; here only the restrictions matter.
        cameo = cameos.mark_verified(cameos.create("alice", alice.id, Visibility.everyone), CameoStatus.verified, {})
        cameo_id = cameo.id
    database.dispose()

    with TestClient(create_app(initialized.settings, workers=0)) as client:
        patched = client.patch(f"/v1/cameos/{cameo_id}", headers=_auth(alice_key), json={
            "content_restrictions": {"terms": ["political rally"], "categories": ["alcohol"]}})
        assert patched.status_code == 200, patched.text
        assert patched.json()["content_restrictions"] == {"terms": ["political rally"], "categories": ["alcohol"]}

        def check(prompt: str, key: str = bob_key) -> dict:
            response = client.post("/v1/gate/check", json={"prompt": prompt}, headers=_auth(key))
            assert response.status_code == 200, response.text
            return response.json()

        assert check("@alice walking a dog on the beach")["allowed"] is True
        rally = check("@alice speaking at a politcal rally")  # misspelled on purpose: the prompt matcher sees it
        assert rally["allowed"] is False
        reason = rally["reasons"][0]
        assert reason["code"] == "cameo_restricted_content" and reason["subject"] == "@alice"
        assert "political rally" in str(reason["evidence"])
        drinking = check("@alice opening a bottle of w1ne")  # a word of the `alcohol` category, in leetspeak
        assert [r["code"] for r in drinking["reasons"]] == ["cameo_restricted_content"]
        assert "category:alcohol" in str(drinking["reasons"][0]["evidence"])
        assert check("@alice at a political rally", key=alice_key)["allowed"] is False, "the owner too"
        # A cameo's own handle is not content ("@wine.lover" is not about alcohol), but another cameo's handle is
        # words the model reads: bob's verified @beer.drinker beside alice carries what she restricts.
        _account_with_a_verified_cameo(initialized, "barfly", "beer.drinker")
        beside = check("@alice @beer.drinker on the beach")
        assert beside["allowed"] is False and "category:alcohol" in str(beside["reasons"]), beside

        before = generation_count(initialized)
        denied = client.post("/v1/generations", json={"prompt": "@alice toasting with champagne and wine"},
                             headers=_auth(bob_key))
        assert denied.status_code == 403 and denied.headers["content-type"].startswith("application/problem+json")
        assert "cameo_restricted_content" in denied.text
        assert generation_count(initialized) == before + 1, "the denial is recorded; nothing is generated"
        # A negative prompt steers toward what it does not name ("clothes, swimsuit" undresses): with a cameo whose
        # owner restricted anything, it is refused, in the dry run as in the request.
        steered = {"prompt": "@alice on a beach", "negative_prompt": "clothes, swimsuit, shirt"}
        denied = client.post("/v1/generations", json=steered, headers=_auth(bob_key))
        assert denied.status_code == 403 and "cameo_restricted_content" in denied.text, denied.text
        dry = client.post("/v1/gate/check", json=steered, headers=_auth(bob_key)).json()
        assert dry["allowed"] is False and "negative_prompt" in str(dry["reasons"][0]["evidence"]), dry
        for odd in ("\U0001f455\U0001f456", "\u200b"):  # emoji, or invisible: a tokenizer may read them
            answer = client.post("/v1/gate/check", json={"prompt": "@alice on a beach", "negative_prompt": odd},
                                 headers=_auth(bob_key))
            assert answer.json()["allowed"] is False, answer.text

        cleared = client.patch(f"/v1/cameos/{cameo_id}", headers=_auth(alice_key),
                               json={"content_restrictions": {"terms": [], "categories": []}})
        assert cleared.status_code == 200
        assert check("@alice speaking at a political rally")["allowed"] is True
        unrestricted = client.post("/v1/gate/check", json={"prompt": "@alice on a beach",
                                                           "negative_prompt": "blurry, low quality"},
                                   headers=_auth(bob_key))
        assert unrestricted.json()["allowed"] is True, unrestricted.text


def test_restrictions_cover_inflections_and_unknown_categories_are_refused(
        initialized) -> None:  # type: ignore[no-untyped-def]
    alice_key, cameo_id = _account_with_a_verified_cameo(initialized, "alice", "alice")

    with TestClient(create_app(initialized.settings, workers=0)) as client:
        unknown = client.patch(f"/v1/cameos/{cameo_id}", headers=_auth(alice_key),
                               json={"content_restrictions": {"categories": ["nudity"]}})
        assert unknown.status_code == 422 and "sexual" in unknown.json()["hint"]  # before: silently kept
        patched = client.patch(f"/v1/cameos/{cameo_id}", headers=_auth(alice_key),
                               json={"content_restrictions": {"terms": ["punch", "clowns", "political rally"]}})
        assert patched.status_code == 200, patched.text

        def allowed(prompt: str) -> bool:
            return client.post("/v1/gate/check", json={"prompt": prompt}, headers=_auth(alice_key)).json()["allowed"]

        for prompt in ("@alice punching a man", "@alice punched him", "@alice dressed as a clown",
                       "@alice at two political rallies"):
            assert not allowed(prompt), prompt  # before: only the exact word counted
        assert allowed("@alice eating lunch") and allowed("@alice in a new dress")


# --- inflections, through the whole gate: the owner's word and its regular forms, not words that merely look alike
@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy.load(POLICY_DIR)


def _allowed(policy: Policy, prompt: str, terms: tuple[str, ...] = (), categories: tuple[str, ...] = ()) -> bool:
    directory = MemoryDirectory(settings=policy.match_settings)
    directory.cameos = {"ann": CameoFacts("c1", "ann", "alice", "everyone", frozenset(), revoked=False, verified=True,
                                          restricted_terms=terms, restricted_categories=categories)}
    return Gate(directory, policy).check(GateRequest("alice", prompt)).allowed


@pytest.mark.parametrize("terms,categories,prompt", [
    (("herring",), (), "@ann hugs her dog"),  # "herring" was taken for her + -ing
    (("evening",), (), "@ann even smiles at the camera"),
    (("rated",), (), "@ann feeds a pet rat"),  # rat + -ed
    (("wicked",), (), "@ann trims a candle wick"),
    ((), ("violence",), "@ann sells her wares at the market"),  # "war" + -es
    ((), ("drugs",), "@ann and the other heroines of the film"),  # "heroin" + -es
    ((), ("gambling",), "@ann meets her friend Bette"),  # "betting" - ing + e
])
def test_restrictions_do_not_catch_words_that_only_look_inflected(policy: Policy, terms: tuple[str, ...],
                                                                  categories: tuple[str, ...], prompt: str) -> None:
    assert _allowed(policy, prompt, terms, categories), prompt  # before: denied


@pytest.mark.parametrize("terms,categories,prompt", [
    (("punch",), (), "@ann punching a man"), (("punch",), (), "@ann punched him"),
    (("punch",), (), "@ann throws two punches"), (("clowns",), (), "@ann dressed as a clown"),
    (("political rally",), (), "@ann at two political rallies"), (("evening",), (), "@ann on summer evenings"),
    ((), ("violence",), "@ann stabs a melon"), ((), ("violence",), "@ann in two wars"),
    ((), ("political",), "@ann voting early"), ((), ("drugs",), "@ann selling a drug"),
    # an -ing word covers its base too (these passed when only forms made from the word counted)
    ((), ("gambling",), "@ann gambles away her savings"), ((), ("gambling",), "@ann bets on a horse"),
    ((), ("gambling",), "@ann places a bet"), ((), ("violence",), "@ann shoots a man"),
    ((), ("violence",), "@ann beats a man"), ((), ("advertising",), "@ann endorses a new phone"),
    (("smoking",), (), "@ann smokes a cigar"), (("drinking",), (), "@ann drinks beer"),
    (("dancing",), (), "@ann dances"), (("kisses",), (), "@ann gives a kiss"), (("kisses",), (), "@ann kissing"),
    (("rallies",), (), "@ann at a rally"),
])
def test_restrictions_cover_the_owners_words_regular_forms(policy: Policy, terms: tuple[str, ...],
                                                          categories: tuple[str, ...], prompt: str) -> None:
    assert not _allowed(policy, prompt, terms, categories), prompt


@pytest.mark.parametrize("prompt", ["\uff20ann on a beach", "@@ann on a beach", "\ufe6bann on a beach",
                                    "\uff20\uff41\uff4e\uff4e on a beach"])
def test_a_mention_in_other_characters_is_a_mention(policy: Policy, prompt: str) -> None:
    """A fullwidth or small at sign, fullwidth letters or a doubled '@' were not read as mentions: the cameo went
    unchecked, while a backend that resolves mentions itself could still find it."""
    assert mentioned_handles(GateRequest("bob", prompt)) == ["ann"]
    assert not _allowed(policy, prompt, ("beach",)), prompt  # her restriction applies, as to "@ann"


@pytest.mark.parametrize("category,prompt", [
    ("sexual", "@ann in nothing but her underwear"), ("sexual", "@ann undressed"), ("sexual", "@ann without clothes"),
    ("sexual", "@ann nackt am Strand"), ("alcohol", "@ann drinking a pint of lager"),
    ("alcohol", "@ann toasting with champagne"), ("alcohol", "@ann with a cerveza"),
    ("weapons", "@ann firing a handgun"), ("weapons", "@ann holding an AK-47"), ("violence", "@ann beaten up"),
    ("drugs", "@ann taking ecstasy pills at a rave"), ("drugs", "@ann snorting a line of white powder"),
    ("weapons", "@ann loading bullets into a magazine"), ("weapons", "@ann with a bullet wound"),
])
def test_categories_cover_everyday_words_for_what_they_name(policy: Policy, category: str, prompt: str) -> None:
    """Words a reviewer found the categories missing (all allowed before); the 196 everyday prompts of
    policies/background_prompts.txt meet the extended categories as often as before (2: a wine glass, a sword)."""
    assert not _allowed(policy, prompt, (), (category,)), prompt


@pytest.mark.parametrize("category,prompt", [
    ("weapons", "@ann writing bullet points"), ("drugs", "@ann in ecstasy after winning"),
    ("drugs", "@ann snorting with laughter"), ("sexual", "@ann watching nothing on TV tonight"),
    ("drugs", "@ann sorting coke bottles at the factory"), ("drugs", "@ann standing in line for coffee"),
])
def test_categories_leave_out_words_with_an_everyday_second_sense(policy: Policy, category: str,
                                                                   prompt: str) -> None:
    assert _allowed(policy, prompt, (), (category,)), prompt


@pytest.mark.parametrize("word,forms", [
    ("punch", ("punched", "punches", "punching")), ("stab", ("stabbed", "stabbing", "stabs")),
    ("rally", ("rallied", "rallies", "rallying")), ("vote", ("voted", "votes", "voting")),
    ("clowns", ("clown", "clowning")), ("drugs", ("drug", "drugged", "drugging")), ("war", ("warring", "wars")),
    ("smoking", ("smoke", "smoked", "smokes")), ("gambling", ("gamble", "gambled", "gambles")),
    ("kisses", ("kiss", "kissed", "kissing")), ("rallies", ("rallied", "rally", "rallying")),
    ("herring", ("herrings",)), ("evening", ("evenings",)),  # short bases never taken off: no "her", "even"
    ("rated", ()), ("wicked", ()), ("betting", ()), ("heroin", ()),  # no "rat", "wick", "bette", "heroines"
    ("beating", ("beatings",)),  # "beat" made it, so never "beate"
    ("news", ()),  # "new" is too short a singular to trust
])
def test_word_forms_follow_regular_english_rules_both_ways(word: str, forms: tuple[str, ...]) -> None:
    assert word_forms(word) == forms


def _policies_naming_a_cameo(target: Path) -> Path:
    """The packaged policies, with Barack Obama's entry naming @barackobama as his own cameo."""
    shutil.copytree(POLICY_DIR, target)
    persons = target / "protected_persons.toml"
    text = persons.read_text(encoding="utf-8")
    entry = 'id = "barack-obama"\n'
    assert entry in text
    persons.write_text(text.replace(entry, entry + 'cameo = "barackobama"\n', 1), encoding="utf-8")
    return target


def test_the_in_memory_directory_honours_only_an_operator_enrolled_persons_cameo(tmp_path: Path) -> None:
    """The benchmarks' and corpus tests' directory follows the database's rule (GateDirectory.person_cameo)."""
    policy = Policy.load(_policies_naming_a_cameo(tmp_path / "policies"))
    directory = MemoryDirectory(settings=policy.match_settings)
    directory.cameos = {"barackobama": CameoFacts("c9", "barackobama", "obama-office", "everyone", frozenset(),
                                                  revoked=False, verified=True)}
    request = GateRequest("someone", "@barackobama giving a speech")
    assert not Gate(directory, policy).check(request).allowed  # a self-service cameo under that handle
    directory.operator_enrolled.add("barackobama")
    assert Gate(directory, policy).check(request).allowed


def test_a_protected_persons_cameo_counts_only_when_an_operator_enrolled_it(
        initialized, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Before, whoever registered the handle a protected person's entry names (with any face) unlocked that person."""
    settings = initialized.settings.model_copy(update={"policy_dir": _policies_naming_a_cameo(tmp_path / "pol")})
    # A self-service cameo under that handle (e.g. registered before the operator named it in the policy).
    mallory_key, squat_id = _account_with_a_verified_cameo(initialized, "mallory", "barackobama",
                                                           {"method": "live_challenge"})

    with TestClient(create_app(settings, workers=0)) as client:
        def reasons() -> list[str]:
            body = client.post("/v1/gate/check", json={"prompt": "Barack Obama giving a speech"},
                               headers=_auth(mallory_key)).json()
            return [reason["code"] for reason in body["reasons"]]

        assert "protected_person" in reasons()  # the self-service cameo under his handle unlocks nothing
        refused = client.post("/v1/cameos", json={"handle": "@BarackObama"}, headers=_auth(mallory_key))
        assert refused.status_code == 409 and refused.json()["code"] == "handle_reserved"

        # The operator renames the squatted cameo and enrolls the person's own (consent collected in person): that
        # one grants as its owner chose.
        database = Database(initialized.settings.resolved_database_url)
        with database.session() as session:
            session.get(Cameo, squat_id).handle = "mallory_cam"
        assert client.post("/v1/cameos", json={"handle": "barackobama"},
                           headers=_auth(mallory_key)).json()["code"] == "handle_reserved"  # free, still reserved
        with database.session() as session:
            owner = Accounts(session).create("obama_office")
            cameos = Cameos(session)
            cameos.mark_verified(cameos.create("barackobama", owner.id, Visibility.everyone),
                                 CameoStatus.verified_by_operator, {"method": "operator_images"})
        database.dispose()
        assert reasons() == []
