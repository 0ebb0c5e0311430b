"""Accounts and API keys through HTTP and the CLI, on SQLite and PostgreSQL: keys listed by id only, revoked at
once (the next request is refused), the last admin key protected, and every change in the audit log; the policy
version a server starts on is logged once."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.app import create_app
from api.context import Hallmark
from registry import AuditLog
from tests.conftest import run_cli


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _kinds(initialized, subject: str) -> list[str]:  # type: ignore[no-untyped-def]
    hm = Hallmark(initialized.settings)
    try:
        with hm.db.session() as session:
            return [event.kind for event in AuditLog(session).for_subject(subject)]
    finally:
        hm.close()


def test_keys_are_listed_revoked_at_once_and_audited(initialized) -> None:  # type: ignore[no-untyped-def]
    admin = _auth(initialized.admin_key)
    with TestClient(create_app(initialized.settings, workers=0)) as client:
        created = client.post("/v1/accounts", json={"name": "gina"}, headers=admin).json()
        gina_id, first = created["account"]["id"], created["api_key"]
        second = client.post("/v1/accounts/gina/keys", headers=admin).json()["api_key"]
        listed = client.get("/v1/accounts/gina/keys", headers=_auth(first))
        assert listed.status_code == 200 and [k["id"] for k in listed.json()] == [first.split("_")[1],
                                                                                  second.split("_")[1]]
        assert all(set(k) == {"id", "account", "created_at", "revoked_at"} for k in listed.json()), "no secrets"

        # gina revokes her own first key: it stops working at once, the second one keeps working.
        revoked = client.delete(f"/v1/accounts/gina/keys/{first.split('_')[1]}", headers=_auth(second))
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        assert client.get("/v1/me", headers=_auth(first)).status_code == 401
        assert client.get("/v1/me", headers=_auth(second)).json()["name"] == "gina"

        # Not someone else's keys, not an unknown key, not the last admin key.
        other = client.post("/v1/accounts", json={"name": "hank"}, headers=admin).json()["api_key"]
        forbidden = client.delete(f"/v1/accounts/gina/keys/{second.split('_')[1]}", headers=_auth(other))
        assert forbidden.status_code == 403 and forbidden.headers["content-type"].startswith("application/problem")
        assert client.get("/v1/accounts/gina/keys", headers=_auth(other)).status_code == 403
        assert client.delete("/v1/accounts/gina/keys/ffffffffffff", headers=admin).status_code == 404
        admin_id = initialized.admin_key.split("_")[1]
        last = client.delete(f"/v1/accounts/admin/keys/{admin_id}", headers=admin)
        assert last.status_code == 409 and "last working admin key" in last.json()["detail"]
        assert client.get("/v1/me", headers=admin).status_code == 200

    assert _kinds(initialized, gina_id) == ["account.created", "api_key.created", "api_key.created",
                                           "api_key.revoked"]

    # The CLI does the same through the same code.
    keys = run_cli(["accounts", "keys", "gina"], initialized.env)
    assert keys.returncode == 0 and "revoked" in keys.stdout and "active" in keys.stdout
    result = run_cli(["accounts", "revoke-key", "gina", second.split("_")[1]], initialized.env)
    assert result.returncode == 0, result.stderr
    unknown = run_cli(["accounts", "revoke-key", "gina", "nope"], initialized.env)
    assert unknown.returncode != 0 and "no API key with id 'nope'" in unknown.stderr
    assert _kinds(initialized, gina_id)[-1] == "api_key.revoked"


def test_the_policy_version_a_server_starts_on_is_logged_once(sqlite_initialized) -> None:  # type: ignore[no-untyped-def]
    for _ in range(2):  # a restart on the same files adds nothing
        with TestClient(create_app(sqlite_initialized.settings, workers=0)):
            pass
    hm = Hallmark(sqlite_initialized.settings)
    try:
        version = hm.policy.version
        assert _kinds(sqlite_initialized, version) == ["policy.loaded"]
    finally:
        hm.close()
