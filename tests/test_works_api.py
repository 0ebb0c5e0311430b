"""Works, licences and the dry-run gate over real HTTP (ASGI) on SQLite and PostgreSQL, and the generation path
using the same gate."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from registry import AuditLog
from tests.conftest import generation_count


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def client(initialized):  # type: ignore[no-untyped-def]
    from api.app import create_app

    with TestClient(create_app(initialized.settings, workers=0)) as client:
        admin = _auth(initialized.admin_key)
        keys = {}
        for name, role in (("studio", "rights_holder"), ("alice", "creator"), ("bob", "creator")):
            response = client.post("/v1/accounts", json={"name": name, "role": role}, headers=admin)
            assert response.status_code == 201, response.text
            keys[name] = _auth(response.json()["api_key"])
        keys["admin"] = admin
        client.keys = keys  # type: ignore[attr-defined]
        yield client


def _check(client: TestClient, who: str, prompt: str, **extra: Any) -> dict[str, Any]:
    response = client.post("/v1/gate/check", json={"prompt": prompt, **extra}, headers=client.keys[who])
    assert response.status_code == 200, response.text
    return response.json()


def test_rights_holders_register_works_and_disguised_prompts_are_denied(client: TestClient) -> None:
    from skimage import data

    poster = Image.fromarray(data.astronaut())
    body = {"name": "Mickey Mouse", "aliases": ["Topolino", "Musse Pigg"],
            "descriptions": ["Disney's cheerful cartoon mouse with red shorts, white gloves and big round black ears"],
            "rights_claim": "Copyright The Studio",
            "images": [{"filename": "poster.png", "data_base64": base64.b64encode(_png(poster)).decode()}]}
    created = client.post("/v1/works", json=body, headers=client.keys["studio"])
    assert created.status_code == 201, created.text
    work = created.json()
    assert work["holder"] == "studio" and work["mode"] == "opt_out" and work["images"][0]["label"] == "poster.png"
    assert work["aliases"] == ["Mickey Mouse", "Topolino", "Musse Pigg"]

    denied = _check(client, "alice", "M1ck3y M\u200bouse dancing on a pier")
    assert denied["allowed"] is False
    [reason] = denied["reasons"]
    assert reason["code"] == "opted_out_work" and reason["subject"] == "work:Mickey Mouse"
    assert "Mickey Mouse" in reason["message"]
    assert reason["evidence"]["kind"] == "exact" and reason["evidence"]["span"] == [0, 13]
    assert denied["policy_version"].startswith("sha256:")

    paraphrase = _check(client, "alice", "the cheerful cartoon mouse with red shorts and round ears waves")
    assert [r["evidence"]["kind"] for r in paraphrase["reasons"]] == ["semantic"]
    assert _check(client, "alice", "a mouse eating cheese in a kitchen")["allowed"] is True

    copy = poster.resize((256, 256)).transpose(Image.FLIP_LEFT_RIGHT)
    by_image = _check(client, "alice", "a photo", reference_image_base64=base64.b64encode(_png(copy)).decode())
    assert by_image["allowed"] is False and by_image["reasons"][0]["evidence"]["kind"] == "image"
    assert _check(client, "studio", "Mickey Mouse on a boat")["allowed"] is True  # its own rights holder

    # a new alias is enforced at once (the index picks up the change), a removed work no longer is
    patched = client.patch(f"/v1/works/{work['id']}", json={"add_aliases": ["Mikki Hiiri"]},
                           headers=client.keys["studio"])
    assert patched.status_code == 200 and "Mikki Hiiri" in patched.json()["aliases"]
    assert _check(client, "alice", "Mikki Hiiri laulaa")["allowed"] is False
    assert client.delete(f"/v1/works/{work['id']}", headers=client.keys["studio"]).status_code == 204
    assert _check(client, "alice", "Mikki Hiiri laulaa")["allowed"] is True


def test_licensed_works_are_allowed_to_licensees_only(client: TestClient) -> None:
    body = {"name": "Bluey", "mode": "licensed", "licensees": ["alice"], "non_commercial": True,
            "descriptions": ["a blue heeler puppy cartoon character who plays imaginative games with her family"]}
    created = client.post("/v1/works", json=body, headers=client.keys["studio"])
    assert created.status_code == 201, created.text
    work_id = created.json()["id"]
    allowed = _check(client, "alice", "Bluey playing in the backyard")
    assert allowed["allowed"] is True and allowed["obligations"][0]["kind"] == "visible_mark"
    assert [r["code"] for r in _check(client, "bob", "Bluey playing in the backyard")["reasons"]] == ["unlicensed_work"]
    commercial = _check(client, "alice", "Bluey playing in the backyard", commercial=True)
    assert [r["code"] for r in commercial["reasons"]] == ["unlicensed_work"]
    # the holder licenses bob too, then revokes it
    granted = client.post(f"/v1/works/{work_id}/licences", json={"licensee": "bob"}, headers=client.keys["studio"])
    assert granted.status_code == 201, granted.text
    assert _check(client, "bob", "B1uey at the beach")["allowed"] is True
    licence_id = granted.json()["id"]
    assert client.delete(f"/v1/works/{work_id}/licences/{licence_id}",
                         headers=client.keys["studio"]).status_code == 204
    assert _check(client, "bob", "B1uey at the beach")["allowed"] is False
    assert {l["licensee"] for l in client.get(f"/v1/works/{work_id}/licences",
                                                headers=client.keys["studio"]).json()} == {"alice"}


def test_a_rights_holder_manages_only_its_own_works(client: TestClient, initialized) -> None:  # type: ignore[no-untyped-def]
    studio, alice, admin = client.keys["studio"], client.keys["alice"], client.keys["admin"]
    work = client.post("/v1/works", json={"name": "Pikachu"}, headers=studio).json()
    assert client.post("/v1/works", json={"name": "Mine"}, headers=alice).status_code == 403
    assert client.get("/v1/works", headers=alice).json() == []
    assert client.get(f"/v1/works/{work['id']}", headers=alice).status_code == 404
    assert client.delete(f"/v1/works/{work['id']}", headers=alice).status_code == 404
    assert [w["name"] for w in client.get("/v1/works", headers=studio).json()] == ["Pikachu"]
    on_behalf = client.post("/v1/works", json={"name": "Shrek", "holder": "studio"}, headers=admin)
    assert on_behalf.status_code == 201 and on_behalf.json()["holder"] == "studio"
    assert len(client.get("/v1/works?holder=studio", headers=admin).json()) == 2
    assert client.post("/v1/works", json={"name": "X", "holder": "alice"}, headers=admin).status_code == 422
    assert client.post("/v1/works", json={"name": "Pikachu"}, headers=studio).status_code == 409


def test_reference_images_are_added_as_multipart_by_the_holder_only(client: TestClient) -> None:
    from skimage import data

    studio, alice = client.keys["studio"], client.keys["alice"]
    work = client.post("/v1/works", json={"name": "Pikachu"}, headers=studio).json()
    url = f"/v1/works/{work['id']}/images"
    added = client.post(url, files=[("file", ("cat.png", _png(Image.fromarray(data.chelsea())), "image/png")),
                                     ("file", ("coffee.png", _png(Image.fromarray(data.coffee())), "image/png"))],
                        headers=studio)
    assert added.status_code == 200, added.text
    assert [image["label"] for image in added.json()["images"]] == ["cat.png", "coffee.png"]

    # Another account's request is refused before its body is read: a body that is not even valid multipart gets
    # the same 404 as any unknown work, not a parse error.
    garbage = {"Content-Type": "multipart/form-data; boundary=xyz", **alice}
    refused = client.post(url, content=b"not multipart at all", headers=garbage)
    assert refused.status_code == 404 and refused.json()["code"] == "not_found", refused.text
    assert len(client.get(f"/v1/works/{work['id']}", headers=studio).json()["images"]) == 2

    not_image = client.post(url, files={"file": ("x.png", b"not an image", "image/png")}, headers=studio)
    assert not_image.status_code == 415 and "not a readable image" in not_image.json()["detail"], not_image.text
    no_file = client.post(url, files={"other": ("x.png", b"x", "image/png")}, headers=studio)
    assert no_file.status_code == 422 and "`file`" in no_file.json()["detail"], no_file.text
    as_json = client.post(url, json={"file": "x"}, headers=studio)
    assert as_json.status_code == 415 and as_json.json()["code"] == "unsupported_media", as_json.text
    assert len(client.get(f"/v1/works/{work['id']}", headers=studio).json()["images"]) == 2


@pytest.mark.parametrize("path,body", [
    ("/v1/generations", b'{"prompt": "a cat \\ud800 on a mat"}'),
    ("/v1/generations", b'{"prompt": "a cat on a mat\\u0000"}'),
    ("/v1/generations", b'{"prompt": "a cat", "cameos": ["\\ud800x"]}'),
    ("/v1/gate/check", b'{"prompt": "a cat", "as_account": "bob\\u0000"}'),
    ("/v1/works", b'{"name": "Some Work", "aliases": ["Other \\u0000 Name"]}'),
])
def test_text_no_database_can_store_gets_a_problem_not_a_500(  # type: ignore[no-untyped-def]
        client: TestClient, initialized, path: str, body: bytes) -> None:
    """JSON can spell an unpaired surrogate (UTF-8 cannot encode it) and NUL (PostgreSQL's text refuses it). Such a
    prompt was gated, then failed the insert: a 500, with the gate's denial neither stored nor audited."""
    who = "studio" if path == "/v1/works" else "admin"
    before = (_audit_count(initialized), generation_count(initialized))
    response = client.post(path, content=body, headers={**client.keys[who], "content-type": "application/json"})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "invalid_input"
    assert "unpaired surrogate" in problem["detail"] or "NUL character" in problem["detail"], problem
    assert (_audit_count(initialized), generation_count(initialized)) == before  # refused before anything ran
    # Surrogate pairs (an emoji written as JSON escapes) are text like any other.
    fine = client.post("/v1/gate/check", content=b'{"prompt": "a cat \\ud83d\\ude00"}',
                       headers={**client.keys["admin"], "content-type": "application/json"})
    assert fine.status_code == 200, fine.text


@pytest.mark.parametrize("method,path", [
    ("GET", "/manifests/urn:c2pa:%00abc"), ("GET", "/v1/generations/ab%00cd"), ("GET", "/v1/works/ab%00cd"),
    ("GET", "/v1/cameos/ab%00cd"), ("POST", "/v1/accounts/ab%00cd/keys"), ("GET", "/v1/works?holder=st%00udio"),
])
def test_a_nul_in_the_url_gets_a_problem_not_a_500(client: TestClient, method: str, path: str) -> None:
    """PostgreSQL's text refuses NUL: a NUL in a path or query value reached it as a 500 (the manifest route needs
    no key)."""
    response = client.request(method, path, headers=client.keys["admin"])
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_input" and "NUL character" in response.json()["detail"]


def _audit_count(initialized) -> int:  # type: ignore[no-untyped-def]
    from sqlmodel import func, select

    from registry import Database
    from registry.audit.tables import AuditEntry, AuditPending

    database = Database(initialized.settings.resolved_database_url)
    with database.session() as session:  # appended events wait as pending until they are sequenced into entries
        count = sum(session.exec(select(func.count()).select_from(table)).one() for table in (AuditEntry, AuditPending))
    database.dispose()
    return int(count)


@pytest.mark.parametrize("body,status,words", [
    ({"name": "Ab"}, 422, "too short"),
    ({"name": "Some Work", "licensees": ["alice"]}, 422, "no licensees"),
    ({"name": "Some Work", "descriptions": ["hi"]}, 422, "3 words"),
    ({"name": "Some Work", "images": [{"filename": "x.png", "data_base64": "%%%"}]}, 422, "base64"),
    ({"name": "Some Work", "images": [{"filename": "x.png", "data_base64": base64.b64encode(b"not an image").decode()}]},
     415, "not a readable image"),
    ({"name": "Some Work", "mode": "sometimes"}, 422, "mode"),
    ({"name": "Some Work", "valid_from": "2026-02-01T00:00:00Z", "valid_until": "2026-01-01T00:00:00Z"}, 422, "ends"),
])
def test_bad_work_input_gets_a_problem(client: TestClient, body: dict[str, Any], status: int, words: str) -> None:
    response = client.post("/v1/works", json=body, headers=client.keys["studio"])
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert words in response.json()["detail"]


def test_bad_gate_input_gets_a_problem(client: TestClient) -> None:
    for body, status in (({"prompt": "   "}, 422), ({"prompt": "x", "reference_image_base64": "%%"}, 422),
                         ({"prompt": "x", "as_account": "bob"}, 403), ({"prompt": "x", "surprise": 1}, 422)):
        response = client.post("/v1/gate/check", json=body, headers=client.keys["alice"])
        assert response.status_code == status, (body, response.text)
    assert client.post("/v1/gate/check", json={"prompt": "x"}).status_code == 401
    as_bob = client.post("/v1/gate/check", json={"prompt": "a lake", "as_account": "bob"}, headers=client.keys["admin"])
    assert as_bob.status_code == 200 and as_bob.json()["allowed"] is True


def test_generation_uses_the_same_gate_and_records_the_decision(client: TestClient, initialized) -> None:  # type: ignore[no-untyped-def]
    from api.context import Hallmark

    client.post("/v1/works", json={"name": "Darth Vader", "aliases": ["Lord Vader"]}, headers=client.keys["studio"])
    response = client.post("/v1/generations", json={"prompt": "D4rth V4d3r walking a dog", "frames": 12, "fps": 12},
                           headers=client.keys["alice"])
    assert response.status_code == 403, response.text
    problem = response.json()
    assert problem["decision"]["reasons"][0]["code"] == "opted_out_work"
    assert problem["decision"]["policy_version"].startswith("sha256:")
    hm = Hallmark(initialized.settings)
    try:
        with hm.db.session() as session:
            events = AuditLog(session).for_subject(problem["generation_id"])
        assert [e.kind for e in events] == ["generation.requested", "generation.denied"]
        assert events[1].data["reasons"] == ["opted_out_work"]
        assert events[1].data["policy_version"] == hm.policy_version
    finally:
        hm.close()


def test_the_app_refuses_to_start_on_invalid_policies(initialized, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from api.app import create_app
    from guard.gate import PolicyError
    from policies import POLICY_DIR

    broken = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, broken, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (broken / "base.cedar").write_text('@id("base.depict")\npermit (principal, action, resource) when { x };\n')
    settings = initialized.settings.model_copy(update={"policy_dir": broken})
    with pytest.raises(PolicyError, match=r"base.cedar:1:"):
        create_app(settings, workers=0)
