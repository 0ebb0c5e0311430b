"""The gateway through the `hallmark` CLI as a user runs it (subprocesses), on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli


def _env(data_dir: Path, database_url: str) -> dict[str, str]:
    env = {**os.environ, "HALLMARK_DATA_DIR": str(data_dir), "HALLMARK_DATABASE_URL": database_url,
           "PYTHONPATH": str(ROOT)}
    env.pop("HALLMARK_CONFIG", None)
    return env


def test_init_generate_verify(tmp_path: Path, database_url: str, tiny_model: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "models").mkdir(parents=True)
    shutil.copytree(tiny_model, data_dir / "models" / "tiny-wan")
    env = _env(data_dir, database_url)

    first = run_cli(["init"], env)
    assert first.returncode == 0, first.stderr
    assert "Admin API key" in first.stdout and "hm_" in first.stdout
    for secret in ("ca.key", "signer.key", "log.key", "watermark.key"):
        mode = stat.S_IMODE((data_dir / "keys" / secret).stat().st_mode)
        assert mode == 0o600, (secret, oct(mode))
    ca_before = (data_dir / "keys" / "ca.pem").read_bytes()
    again = run_cli(["init", "--json"], env)  # idempotent: keeps keys, prints no second admin key
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["admin_key"] is None
    assert (data_dir / "keys" / "ca.pem").read_bytes() == ca_before

    clip = tmp_path / "out.mp4"
    generated = run_cli(["generate", "a red kite over the sea", "-o", str(clip), "--json", "--frames", "12"], env)
    assert generated.returncode == 0, generated.stderr
    result = json.loads(generated.stdout)
    assert result["status"] == "completed" and result["decision"]["allowed"] is True
    assert result["decision"]["reasons"] == [] and result["output"] == str(clip) and clip.is_file()

    verified = run_cli(["verify", str(clip), "--json"], env)
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["c2pa"]["state"] == "Trusted"
    assert report["watermark"]["detected"] is True
    assert report["watermark"]["payload"] == result["watermark_payload"]
    assert report["record"]["generation_id"] == result["generation_id"]
    assert report["verdict"].endswith("credentials intact.")

    human = run_cli(["verify", str(clip)], env)
    assert human.returncode == 0 and "credentials intact" in human.stdout


def test_cli_denial_and_bad_input(sqlite_initialized, tmp_path: Path) -> None:
    from registry import Cameos, CameoStatus, Database

    env = sqlite_initialized.env
    database = Database(sqlite_initialized.settings.resolved_database_url)
    with database.session() as session:
        from registry import Accounts

        owner = Accounts(session).create("carol")
        cameos = Cameos(session)
        # The face side of registration is tested in test_cameos.py; here only the gate's permission matters.
        cameos.mark_verified(cameos.create("carol", owner.id), CameoStatus.verified_by_operator, {})
    database.dispose()
    run_cli(["accounts", "create", "dave"], env)

    clip = tmp_path / "denied.mp4"
    denied = run_cli(["generate", "@carol on a bicycle", "-o", str(clip), "--as", "dave", "--json"], env)
    assert denied.returncode == 3, denied.stderr
    body = json.loads(denied.stdout)
    assert body["status"] == "denied" and body["output"] is None
    assert [r["code"] for r in body["decision"]["reasons"]] == ["cameo_not_permitted"]
    assert not clip.exists()

    cases = [
        (["generate", "", "-o", str(tmp_path / "a.mp4")], "prompt is empty"),
        (["generate", "a kite", "-o", str(tmp_path / "a.mp4"), "--size", "300x300"], "multiple of 16"),
        (["generate", "a kite", "-o", str(tmp_path / "a.mp4"), "--size", "big"], "--size must look like"),
        (["generate", "a kite", "-o", str(tmp_path / "no" / "a.mp4")], "does not exist"),
        (["generate", "a kite", "-o", str(tmp_path / "a.mp4"), "--as", "nobody"], "No account named"),
        (["verify", str(tmp_path / "missing.mp4")], "No such file"),
        (["accounts", "create", "dave"], "already exists"),
        (["watermark", "embed", str(tmp_path / "x.mp4"), str(tmp_path / "y.mp4"), "--payload", "zz"],
         "not hexadecimal"),
    ]
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x01 not a video " * 50)
    cases += [(["verify", str(empty)], "empty"), (["verify", str(garbage)], "not a readable video")]
    for args, fragment in cases:
        result = run_cli(args, env)
        assert result.returncode == 2, (args, result.returncode, result.stdout, result.stderr)
        assert fragment in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "a.mp4").exists()
    # Settings an operator gets wrong: a list that is not JSON, a database Hallmark does not run on, a config file
    # that is not there or has a misspelt key.
    typo = tmp_path / "hallmark.toml"
    typo.write_text("prot = 9001\n")
    for variable, value, fragment in (("HALLMARK_TRUST_ANCHORS", "/etc/root.pem", "take JSON"),
                                      ("HALLMARK_DATABASE_URL", "mysql://x@127.0.0.1/db", "SQLite or PostgreSQL"),
                                      ("HALLMARK_REDIS_URL", "127.0.0.1:6379", "must start with redis://"),
                                      ("HALLMARK_CONFIG", str(tmp_path / "missing.toml"), "which is not a file"),
                                      ("HALLMARK_CONFIG", str(typo), "Did you mean 'port'?")):
        result = run_cli(["accounts", "list"], {**env, variable: value})
        assert result.returncode != 0 and fragment in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_commands_refuse_to_run_before_init(tmp_path: Path) -> None:
    env = _env(tmp_path / "fresh", f"sqlite:///{tmp_path / 'fresh.db'}")
    result = run_cli(["accounts", "list"], env)
    assert result.returncode == 1
    assert "hallmark init" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["generate", "--help"], ["verify", "--help"]])
def test_help_is_available(args: list[str], tmp_path: Path) -> None:
    result = run_cli(args, _env(tmp_path, f"sqlite:///{tmp_path / 'x.db'}"))
    assert result.returncode == 0 and "Usage" in result.stdout


def test_config_masks_secrets(tmp_path: Path) -> None:
    env = {**_env(tmp_path, "postgresql+psycopg://hallmark:s3cret-pw@db.example/hallmark"),
           "HALLMARK_WATERMARK_KEY": "a-very-secret-watermark-key"}
    result = run_cli(["config"], env)
    assert result.returncode == 0, result.stderr
    assert "s3cret-pw" not in result.stdout and "a-very-secret-watermark-key" not in result.stdout
    shown = json.loads(result.stdout)
    assert shown["watermark_key"] == "**********" and "***" in shown["database_url"]
