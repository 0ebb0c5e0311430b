"""A cameo owner's content restrictions (terms and categories), set through the API and enforced by the gate for
every requester, on SQLite and PostgreSQL: a permitted cameo in restricted content is denied with the matched words
as evidence, the same cameo elsewhere is allowed, and a generation request is refused the same way."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.app import create_app
from registry import Accounts, Cameos, CameoStatus, Database, Visibility
from tests.conftest import generation_count


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


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

        before = generation_count(initialized)
        denied = client.post("/v1/generations", json={"prompt": "@alice toasting with champagne and wine"},
                             headers=_auth(bob_key))
        assert denied.status_code == 403 and denied.headers["content-type"].startswith("application/problem+json")
        assert "cameo_restricted_content" in denied.text
        assert generation_count(initialized) == before + 1, "the denial is recorded; nothing is generated"

        cleared = client.patch(f"/v1/cameos/{cameo_id}", headers=_auth(alice_key),
                               json={"content_restrictions": {"terms": [], "categories": []}})
        assert cleared.status_code == 200
        assert check("@alice speaking at a political rally")["allowed"] is True
