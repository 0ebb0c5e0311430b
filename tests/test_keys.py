"""`hallmark keys` and the trust store with real key files, real c2pa-rs signing and reading: list, rotate (old
clips stay Trusted), a new root, importing an operator's chain, trust anchors, and a KMS/HSM callback signer whose
key never touches disk."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from api.app import create_app
from api.context import Hallmark
from api.keystore import KeyStore
from bench.corpus import synthetic_frames, write_clip
from guard.marks import watermark_key_id, watermark_method
from guard.marks.apply import detect_file
from registry import AuditTree, Database
from tests.conftest import Initialized, make_settings, run_cli
from guard.errors import KeyMaterialError
from guard.media import Frame, VideoWriter
from guard.provenance import ManifestFacts, build_manifest, read_c2pa, sign_video
from guard.provenance.keys import IssuedCertificate, issue_signing_certificate, make_root_ca
from guard.provenance.signing import pem_signer


@pytest.fixture(scope="module")
def plain_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "plain.mp4"
    with VideoWriter(path, 96, 64, 8, preset="ultrafast") as writer:
        for shade in range(0, 240, 30):
            writer.write(Frame.from_rgb(np.full((64, 96, 3), shade, dtype=np.uint8)))
    return path


def sign_with(hm: Hallmark, source: Path, target: Path) -> Path:
    facts = ManifestFacts(generation_id=target.stem, operator="Hallmark", claim_generator_version="t",
                          model_backend="t", model_name="t", model_version="t", model_sha256=None,
                          watermark_alg="org.hallmark.t.1", watermark_payload_hex="11" * 8, duration_ms=1000,
                          policy_version="p")
    sign_video(source, target, build_manifest(facts), hm.signer())  # the signer the pipeline uses
    return target


def state(hm: Hallmark, clip: Path) -> str:
    return read_c2pa(clip, hm.trust).state


def fresh(init: Initialized, **overrides) -> Hallmark:  # type: ignore[no-untyped-def]
    return Hallmark(make_settings(init.settings.data_dir, init.settings.resolved_database_url, **overrides))


def test_list_shows_chain_anchors_and_never_a_private_key(sqlite_initialized: Initialized) -> None:
    result = run_cli(["keys", "list", "--json"], sqlite_initialized.env)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["signer"]["kind"] == "key file" and status["signer"]["key_mode"] == "0o600"
    leaf, root = status["signer"]["chain"]
    assert not leaf["ca"] and root["ca"] and leaf["issuer"] == root["subject"]
    assert [a["source"] for a in status["trust_anchors"]] == ["local root"]
    assert status["tsa_url"] is None
    assert [w for w in status["warnings"] if "No timestamp authority" in w and leaf["not_after"][:10] in w]
    human = run_cli(["keys", "list"], sqlite_initialized.env)
    assert human.returncode == 0 and "Trust anchors" in human.stdout and "will verify as expired" in human.stdout
    for output in (result.stdout, human.stdout, result.stderr, human.stderr):
        assert "PRIVATE KEY" not in output


def test_the_operator_is_warned_before_the_signing_certificate_expires(sqlite_initialized: Initialized) -> None:
    """Before, nothing said so until generations failed and released clips read as expired."""
    import datetime as dt

    from api.keystore import signing_warnings
    from guard.provenance.keys import load_certificates

    settings = fresh(sqlite_initialized, tsa_url="http://127.0.0.1:9/tsa").settings
    until = load_certificates(settings.paths.signer_chain.read_bytes(), "chain")[0].not_valid_after_utc
    assert signing_warnings(settings, now=until - dt.timedelta(days=60)) == []  # a TSA is set and time is left
    soon = signing_warnings(settings, now=until - dt.timedelta(days=10))
    assert len(soon) == 1 and f"expires on {until:%Y-%m-%d} (10 days)" in soon[0] and "keys rotate" in soon[0]
    past = signing_warnings(settings, now=until + dt.timedelta(days=1))
    assert len(past) == 1 and "expired on" in past[0] and "cannot be signed" in past[0]


def test_rotation_keeps_earlier_clips_trusted(sqlite_initialized: Initialized, plain_clip: Path,
                                              tmp_path: Path) -> None:
    hm = fresh(sqlite_initialized)
    paths = hm.paths
    before = sign_with(hm, plain_clip, tmp_path / "before.mp4")
    old_chain = paths.signer_chain.read_bytes()

    change = KeyStore(hm).rotate()
    assert paths.signer_chain.read_bytes() != old_chain
    assert (Path(change.retired_to) / "signer.key").stat().st_mode & 0o777 == 0o600
    assert paths.signer_key.stat().st_mode & 0o777 == 0o600
    after = sign_with(hm, plain_clip, tmp_path / "after.mp4")
    assert (state(hm, before), state(hm, after)) == ("Trusted", "Trusted")

    old_root = paths.ca_cert.read_bytes()
    change = KeyStore(hm).rotate(new_ca=True)
    assert paths.ca_cert.read_bytes() != old_root and change.trusted_added
    newest = sign_with(hm, plain_clip, tmp_path / "newest.mp4")
    # The same (running) context sees the new trust store, and so does a new process.
    assert [state(hm, clip) for clip in (before, after, newest)] == ["Trusted"] * 3
    assert [state(fresh(sqlite_initialized), clip) for clip in (before, after, newest)] == ["Trusted"] * 3
    assert len(list(paths.retired.iterdir())) == 2


def test_importing_an_operator_chain(sqlite_initialized: Initialized, plain_clip: Path, tmp_path: Path) -> None:
    hm = fresh(sqlite_initialized)
    operator_root = make_root_ca("Acme Studios")
    operator = issue_signing_certificate(operator_root, "Acme Studios")
    chain, key, root = tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "root.pem"
    chain.write_bytes(operator.certificate_pem)
    # As `openssl ecparam -genkey` writes it (SEC1, "BEGIN EC PRIVATE KEY"): converted to PKCS#8 on import.
    from cryptography.hazmat.primitives import serialization

    key.write_bytes(serialization.load_pem_private_key(operator.private_key_pem, None).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    assert key.read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")
    root.write_bytes(operator_root.certificate_pem)
    before = paths_snapshot(hm)

    # Without its root in the trust store the chain would make Valid-but-untrusted clips: refused, nothing changed.
    refused = run_cli(["keys", "import", "--chain", str(chain), "--key", str(key)], sqlite_initialized.env)
    assert refused.returncode == 2 and "not Trusted" in refused.stderr and "--trust-root" in refused.stderr
    assert paths_snapshot(hm) == before
    wrong_key = issue_signing_certificate(operator_root, "Acme Studios").private_key_pem
    with pytest.raises(KeyMaterialError, match="does not belong"):
        KeyStore(hm).import_chain(operator.certificate_pem, wrong_key, trust_root=operator_root.certificate_pem)
    with pytest.raises(KeyMaterialError, match="not a CA"):
        KeyStore(hm).import_chain(operator.certificate_pem, operator.private_key_pem,
                                  trust_root=operator.certificate_pem)

    done = run_cli(["keys", "import", "--chain", str(chain), "--key", str(key), "--trust-root", str(root), "--json"],
                   sqlite_initialized.env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["signer"][0]["subject"] == "O=Acme Studios,CN=Acme Studios Content Credentials"
    hm = fresh(sqlite_initialized)
    clip = sign_with(hm, plain_clip, tmp_path / "acme.mp4")
    report = read_c2pa(clip, hm.trust)
    assert report.state == "Trusted" and report.issuer == "Acme Studios"
    assert hm.paths.signer_key.stat().st_mode & 0o777 == 0o600
    assert hm.paths.signer_key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    # Rotating now goes back to the local CA, and says that the imported chain goes.
    rotated = KeyStore(hm).rotate()
    assert any("imported chain (issued by O=Acme Studios" in note for note in rotated.notes), rotated.notes
    assert not any("imported" in note for note in KeyStore(fresh(sqlite_initialized)).rotate().notes)


def test_a_p384_chain_is_refused_with_the_algorithm_to_set_then_signs_as_es384(
        sqlite_initialized: Initialized, plain_clip: Path, tmp_path: Path) -> None:
    """Before, c2pa-rs refused the key as "invalid ES256 private key … unsupported algorithm OID" with a hint to
    re-import, and the command exited 1."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP384R1())
    root = make_root_ca("Org B")
    leaf = issue_signing_certificate(root, "Org B", public_key=key.public_key())
    files = {"--chain": leaf.certificate_pem, "--trust-root": root.certificate_pem,
             "--key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())}
    args = ["keys", "import"]
    for option, data in files.items():
        (tmp_path / option.strip("-")).write_bytes(data)
        args += [option, str(tmp_path / option.strip("-"))]
    hm = fresh(sqlite_initialized)
    before = paths_snapshot(hm)
    refused = run_cli(args, sqlite_initialized.env)
    assert refused.returncode == 2, refused.stderr
    assert "secp384r1 key, which signs as es384, but HALLMARK_SIGNER_ALG is es256" in refused.stderr
    assert "HALLMARK_SIGNER_ALG=es384" in refused.stderr and paths_snapshot(hm) == before

    env = {**sqlite_initialized.env, "HALLMARK_SIGNER_ALG": "es384"}
    assert run_cli(args, env).returncode == 0
    hm = fresh(sqlite_initialized, signer_alg="es384")
    report = read_c2pa(sign_with(hm, plain_clip, tmp_path / "org-b.mp4"), hm.trust)
    assert report.state == "Trusted" and report.issuer == "Org B"


def paths_snapshot(hm: Hallmark) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(hm.paths.keys.rglob("*")) if p.is_file()}


def test_trust_anchors_decide_trusted_or_valid(sqlite_initialized: Initialized, plain_clip: Path,
                                               tmp_path: Path) -> None:
    hm = fresh(sqlite_initialized)
    other_root = make_root_ca("Newsroom")
    other = issue_signing_certificate(other_root, "Newsroom")
    theirs = tmp_path / "theirs.mp4"
    sign_video(plain_clip, theirs, build_manifest(ManifestFacts(
        generation_id="n", operator="Newsroom", claim_generator_version="1", model_backend="-", model_name="-",
        model_version="-", model_sha256=None, watermark_alg="x.y.1", watermark_payload_hex="00" * 8, duration_ms=1,
        policy_version="-")), pem_signer(other.certificate_pem, other.private_key_pem))
    assert state(hm, theirs) == "Valid"
    anchor = tmp_path / "newsroom-root.pem"
    anchor.write_bytes(other_root.certificate_pem)
    assert run_cli(["keys", "trust", "add", str(anchor)], sqlite_initialized.env).returncode == 0
    assert state(hm, theirs) == "Trusted"
    assert KeyStore(hm).trust_add(other_root.certificate_pem).notes == ["already trusted"]
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(other.certificate_pem[: other.certificate_pem.index(b"-----END CERTIFICATE-----") + 26])
    refused = run_cli(["keys", "trust", "add", str(leaf)], sqlite_initialized.env)
    assert refused.returncode == 2 and "must be a CA certificate" in refused.stderr
    fingerprint = next(a["sha256"] for a in KeyStore(hm).anchors() if "Newsroom" in a["subject"])
    KeyStore(hm).trust_remove(fingerprint[:12])
    assert state(hm, theirs) == "Valid"
    with pytest.raises(KeyMaterialError, match="No anchor"):
        KeyStore(hm).trust_remove(fingerprint[:12])


def test_kms_callback_signer_keeps_the_key_off_disk(sqlite_initialized: Initialized, plain_clip: Path,
                                                    tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.fake_kms as fake_kms

    monkeypatch.setenv("HALLMARK_TEST_KMS_SECRET", "kms-test-secret")
    hm = fresh(sqlite_initialized, signer_callback="tests.fake_kms:sign")
    paths = hm.paths
    ca = IssuedCertificate(paths.ca_cert.read_bytes(), paths.ca_key.read_bytes())
    chain = issue_signing_certificate(ca, "Hallmark", public_key=fake_kms.public_key())
    assert chain.private_key_pem == b""
    change = KeyStore(hm).import_chain(chain.certificate_pem, None)
    assert not paths.signer_key.exists() and any("callback" in note for note in change.notes)
    # `hallmark init` again (as an upgrade does, to migrate): the KMS chain stays, no local key appears.
    from api.bootstrap import initialize

    chain_before = paths.signer_chain.read_bytes()
    rerun = initialize(hm.settings)
    assert "C2PA signing certificate" in rerun.kept and paths.signer_chain.read_bytes() == chain_before
    assert not paths.signer_key.exists()
    clip = sign_with(hm, plain_clip, tmp_path / "kms.mp4")
    assert state(hm, clip) == "Trusted"
    assert KeyStore(hm).status()["signer"]["kind"] == "callback (KMS/HSM)"
    with pytest.raises(KeyMaterialError, match="KMS/HSM"):
        KeyStore(hm).rotate()
    # Without a callback there is no key any more: signing fails closed with a clear message.
    with pytest.raises(KeyMaterialError, match="signing key is missing"):
        fresh(sqlite_initialized).signer()


def test_init_force_renews_the_signing_keys_and_keeps_the_secrets_clips_and_checkpoints_depend_on(
        tmp_path: Path) -> None:
    """--force once retired the watermark secret and the log key too: every clip released before stopped being
    traced, and every published checkpoint stopped verifying."""
    from api.bootstrap import initialize

    settings = make_settings(tmp_path / "data", f"sqlite:///{tmp_path / 'h.db'}",
                             generator="tests.test_generator:ToneBackend")
    initialize(settings)
    paths = settings.paths
    before = {path: path.read_bytes() for path in (paths.watermark_key, paths.face_key, paths.log_key,
                                                    paths.log_pub, paths.ca_cert, paths.signer_chain)}
    forced = initialize(settings, force=True)
    assert {"C2PA local root CA", "C2PA signing certificate issued by the local CA"} <= set(forced.created)
    for kept in (paths.watermark_key, paths.face_key, paths.log_key, paths.log_pub):
        assert kept.read_bytes() == before[kept], kept
    assert paths.ca_cert.read_bytes() != before[paths.ca_cert]
    assert paths.signer_chain.read_bytes() != before[paths.signer_chain]
    retired = sorted(p.name for p in (paths.keys / "retired").rglob("*") if p.is_file())
    assert retired == sorted([paths.ca_cert.name, paths.ca_key.name, paths.signer_chain.name, paths.signer_key.name])
    assert [p.read_bytes() for p in (paths.keys / "trusted").glob("root-*.pem")] == [before[paths.ca_cert]]


# --- the watermark secret -----------------------------------------------------------------------------------------

def test_watermark_rotation_marks_new_clips_with_the_new_key_and_still_reads_old_ones(
        sqlite_initialized: Initialized, tmp_path: Path) -> None:
    """A leaked watermark secret lets anyone read and embed marks, so it must be replaceable without losing every
    clip released so far: `keys rotate-watermark` marks new clips with a new secret and keeps reading the old one,
    and says so wherever a mark is read with it."""
    env, paths = sqlite_initialized.env, sqlite_initialized.settings.paths
    source = write_clip(synthetic_frames("pan", 640, 360, 24, seed=5), tmp_path / "source.mp4")
    old_key = paths.watermark_key.read_bytes()
    assert run_cli(["watermark", "embed", str(source), str(tmp_path / "old.mp4"), "--payload", "00112233445566ff"],
                   env).returncode == 0

    rotated = run_cli(["keys", "rotate-watermark", "--json"], env)
    assert rotated.returncode == 0, rotated.stderr
    change = json.loads(rotated.stdout)
    [retired_file] = paths.watermark_retired.glob("*.key")
    assert change["retired_to"] == str(retired_file) and retired_file.read_bytes() == old_key
    assert retired_file.stat().st_mode & 0o777 == 0o600 and paths.watermark_retired.stat().st_mode & 0o777 == 0o700
    new_key = paths.watermark_key.read_bytes()
    assert new_key != old_key and len(new_key) == 32 and paths.watermark_key.stat().st_mode & 0o777 == 0o600
    assert change["watermark_key_ids"] == [watermark_key_id(new_key), watermark_key_id(old_key)]
    assert any("restart every server and worker" in note for note in change["notes"])
    listed = json.loads(run_cli(["keys", "list", "--json"], env).stdout)["watermark"]
    assert listed["current"]["key_id"] == watermark_key_id(new_key)
    assert listed["retired"] == [{"label": retired_file.stem, "key_id": watermark_key_id(old_key)}]
    assert old_key.hex() not in rotated.stdout + json.dumps(listed)

    # The clip marked before still reads, said to be read with the retired key; a new one gets the new key only.
    old = json.loads(run_cli(["watermark", "detect", str(tmp_path / "old.mp4"), "--json"], env).stdout)
    assert old["detected"] and old["payload"] == "00112233445566ff" and old["p_value"] <= 1e-6
    assert old["retired_key"] == retired_file.stem
    assert run_cli(["watermark", "embed", str(source), str(tmp_path / "new.mp4"), "--payload", "8899aabbccddeeff"],
                   env).returncode == 0
    new = json.loads(run_cli(["watermark", "detect", str(tmp_path / "new.mp4"), "--json"], env).stdout)
    assert new["payload"] == "8899aabbccddeeff" and new["retired_key"] is None
    assert not detect_file(tmp_path / "new.mp4", watermark_method("hallmark", old_key)).detected
    # Reading with two keys tests twice the hypotheses, and the p-value counts them.
    alone = detect_file(tmp_path / "old.mp4", watermark_method("hallmark", old_key))
    assert alone.payload == bytes.fromhex("00112233445566ff") and alone.retired_key is None
    assert alone.p_value is not None and alone.p_value < old["p_value"]

    verified = json.loads(run_cli(["verify", str(tmp_path / "old.mp4"), "--json"], env).stdout)
    assert verified["watermark"]["retired_key"] == retired_file.stem
    assert any(f"retired watermark key ({retired_file.stem})" in note for note in verified["notes"])

    database = Database(sqlite_initialized.settings.resolved_database_url)
    AuditTree(database.engine).integrate()
    events = [json.loads(entry.leaf) for entry in AuditTree(database.engine).entries(0, 10**6)]
    database.dispose()
    [logged] = [event for event in events if event["kind"] == "keys.rotate-watermark"]
    assert logged["data"]["watermark_key_ids"] == change["watermark_key_ids"]


def test_a_watermark_secret_from_the_environment_is_rotated_there(sqlite_initialized: Initialized,
                                                                   tmp_path: Path) -> None:
    first, second = "first watermark secret, 32 chars", "second watermark secret, 33 chars"
    env = {**sqlite_initialized.env, "HALLMARK_WATERMARK_KEY": first}
    refused = run_cli(["keys", "rotate-watermark"], env)
    assert refused.returncode != 0 and "HALLMARK_WATERMARK_RETIRED_KEYS" in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr
    source = write_clip(synthetic_frames("zoom", 640, 360, 24, seed=7), tmp_path / "source.mp4")
    assert run_cli(["watermark", "embed", str(source), str(tmp_path / "marked.mp4"), "--payload",
                    "0123456789abcdef"], env).returncode == 0
    env.update(HALLMARK_WATERMARK_KEY=second, HALLMARK_WATERMARK_RETIRED_KEYS=json.dumps([first]))
    read = json.loads(run_cli(["watermark", "detect", str(tmp_path / "marked.mp4"), "--json"], env).stdout)
    assert read["payload"] == "0123456789abcdef" and read["retired_key"] == "HALLMARK_WATERMARK_RETIRED_KEYS[0]"
    shown = json.loads(run_cli(["config"], env).stdout)
    assert shown["watermark_retired_keys"] == ["**********"] and first not in json.dumps(shown)


def test_bad_retired_watermark_keys_are_refused_at_start_with_the_file_named(sqlite_initialized: Initialized,
                                                                              tmp_path: Path) -> None:
    paths = sqlite_initialized.settings.paths
    retired = paths.watermark_retired
    retired.mkdir(mode=0o700)
    # An interrupted rotation: the current key was kept as retired but not replaced yet. Read once, not twice.
    (retired / "20261201T000000Z.key").write_bytes(paths.watermark_key.read_bytes())
    listed = json.loads(run_cli(["keys", "list", "--json"], sqlite_initialized.env).stdout)["watermark"]
    assert listed["retired"] == []

    (retired / "broken.key").mkdir()  # not a key file
    detect = run_cli(["watermark", "detect", str(tmp_path / "none.mp4")], sqlite_initialized.env)
    assert detect.returncode != 0 and "Traceback" not in detect.stderr
    assert "retired watermark key" in detect.stderr and "broken.key" in detect.stderr
    with pytest.raises(KeyMaterialError, match="broken.key"):
        create_app(sqlite_initialized.settings, workers=0)
    (retired / "broken.key").rmdir()

    # An empty or short retired key would let anyone make marks that lead to real generations.
    env = {**sqlite_initialized.env, "HALLMARK_WATERMARK_RETIRED_KEYS": json.dumps([""])}
    refused = run_cli(["watermark", "detect", str(tmp_path / "none.mp4")], env)
    assert refused.returncode != 0 and "HALLMARK_WATERMARK_RETIRED_KEYS[0] is shorter than 128 bits" in refused.stderr
    shown = json.loads(run_cli(["keys", "list", "--json"], env).stdout)["watermark"]  # the listing says why
    assert "shorter than 128 bits" in shown["error"]

    # The v0 baseline reads with the current key only: rotating would misread every clip it marked.
    env = {**sqlite_initialized.env, "HALLMARK_WATERMARK_METHOD": "dwtDctSvd"}
    baseline = run_cli(["keys", "rotate-watermark"], env)
    assert baseline.returncode != 0 and "HALLMARK_WATERMARK_METHOD=hallmark" in baseline.stderr
    assert not list(retired.glob("2026*.key"))[1:], "nothing was rotated"
