"""What an uploaded file or a public query can make the server do, over HTTP through the ASGI app with a real data
dir: no request to a URL the file names (a C2PA remote manifest, an HLS playlist), no local file read through a
playlist or a concat list, no 500 on a long filename, bounded soft-binding queries, C2PA credentials found in GIF
and PNG files, and a missing trust anchor said at start-up instead of on every verification."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import av
import c2pa
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from api.context import Hallmark
from guard.errors import InvalidInput, KeyMaterialError, MediaError
from guard.media import probe, read_frames
from guard.provenance import build_manifest, c2pa_mime_for_container, payload_from_soft_binding_value
from guard.provenance.keys import make_root_ca
from tests.conftest import Initialized, initialize_at, make_settings, run_cli
from tests.test_verify import _facts, _synthetic_clip


@pytest.fixture(scope="module")
def init(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Initialized:
    root = tmp_path_factory.mktemp("upload-safety")
    return initialize_at(root / "data", f"sqlite:///{root / 'hallmark.db'}", tiny_model,
                         max_upload_bytes=8 * 1024 * 1024)


@pytest.fixture(scope="module")
def client(init: Initialized) -> Iterator[TestClient]:
    with TestClient(create_app(init.settings, workers=0)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _synthetic_clip(tmp_path_factory.mktemp("clip") / "plain.mp4")


class _Recorder(BaseHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        self.requests.append(self.path)
        self.send_error(404)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that records every request it gets: (its base URL, the paths requested)."""
    requests: list[str] = []
    handler = type("Handler", (_Recorder,), {"requests": requests})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return int(probe_socket.getsockname()[1])


def with_remote_manifest_reference(source: Path, target: Path, url: str) -> Path:
    """`source` with an XMP box (ISO BMFF uuid box, appended) whose dcterms:provenance names `url`: how a file says
    its C2PA manifest is remote."""
    xmp = ('<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
           'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
           f'xmlns:dcterms="http://purl.org/dc/terms/" dcterms:provenance="{url}"/></rdf:RDF></x:xmpmeta>'
           '<?xpacket end="w"?>').encode()
    box = struct.pack(">I4s", 24 + len(xmp), b"uuid") + bytes.fromhex("BE7ACFCB97A942E89C71999491E3AFAC") + xmp
    target.write_bytes(source.read_bytes() + box)
    return target


def post_file(client: TestClient, path: Path, *, name: str | None = None,
              content_type: str = "video/mp4"):  # type: ignore[no-untyped-def]
    with path.open("rb") as handle:
        return client.post("/v1/verify", files={"file": (name or path.name, handle, content_type)})


# --- 1. a remote manifest named by the file is not fetched ------------------------------------------------------

def test_a_remote_manifest_reference_is_reported_not_fetched(client: TestClient, clip: Path, tmp_path: Path,
                                                              listener: tuple[str, list[str]]) -> None:
    """Before, c2pa-rs fetched the URL (the server made a request the uploader chose) and the report's error text
    told an open port from a closed one, under "Broken credentials"."""
    base, requests = listener
    sections = []
    for url in (f"{base}/m.c2pa", f"http://127.0.0.1:{_closed_port()}/m.c2pa"):
        answer = post_file(client, with_remote_manifest_reference(clip, tmp_path / "remote.mp4", url))
        assert answer.status_code == 200, answer.text
        report = answer.json()["c2pa"]
        assert report["present"] is False and report["state"] == "absent" and report["failure_codes"] == []
        assert report["note"].startswith("The file references a remote manifest at 127.0.0.1 (not fetched")
        assert "Broken" not in answer.json()["verdict"]
        sections.append(report)
    assert requests == []
    assert sections[0] == sections[1]  # nothing tells an open port from a closed one


# --- 2. no local file or URL read through a playlist ------------------------------------------------------------

def test_a_playlist_upload_is_refused_and_opens_nothing(client: TestClient, clip: Path, tmp_path: Path,
                                                        listener: tuple[str, list[str]]) -> None:
    """Before, a `.m3u8` filename made FFmpeg's HLS demuxer open the local file (or URL) the playlist listed, and
    the server answered with a full report on it."""
    base, requests = listener
    for segment in (str(clip), f"{base}/segment.mp4"):
        playlist = tmp_path / "evil.m3u8"
        playlist.write_text(f"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:0\n"
                            f"#EXTINF:2.0,\n{segment}\n#EXT-X-ENDLIST\n")
        for content_type in ("application/vnd.apple.mpegurl", "video/mp4"):
            answer = post_file(client, playlist, content_type=content_type)
            assert answer.status_code == 422, answer.text
            assert answer.json()["code"] == "unreadable_media" and "/" not in answer.json()["detail"]
        with pytest.raises(MediaError, match="in a format Hallmark does not read"):
            probe(playlist)  # the CLI, with the file's own name
    assert requests == []


def test_a_concat_list_is_refused(clip: Path, tmp_path: Path) -> None:
    (tmp_path / "inside.mp4").write_bytes(clip.read_bytes())
    listing = tmp_path / "list.mp4"
    listing.write_text("ffconcat version 1.0\nfile inside.mp4\n")
    with pytest.raises(MediaError, match="in a format Hallmark does not read"):
        probe(listing)


def test_plain_containers_and_pictures_still_open(clip: Path, tmp_path: Path) -> None:
    picture = tmp_path / "still.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(picture)
    assert probe(picture).container == "png_pipe"
    assert probe(clip).container.startswith("mov,mp4")


@pytest.mark.parametrize(("name", "muxer", "codec"), [
    ("saved-from-a-stream.ts", "mpegts", "libx264"),  # as a clip saved from a live stream comes
    ("camcorder.mpg", "mpeg", "mpeg2video"),
    ("old-tool.flv", "flv", "flv"),
    ("windows.wmv", "asf", "wmv2"),
    ("broadcast.mxf", "mxf", "mpeg2video"),
    ("elementary.h264", "h264", "libx264"),
])
def test_other_plain_video_formats_open(tmp_path: Path, name: str, muxer: str, codec: str) -> None:
    """The allow-list of demuxers first left these out, although they read only their own file."""
    path = tmp_path / name
    with av.open(str(path), "w", format=muxer) as output:
        video = output.add_stream(codec, rate=25)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        for shade in range(0, 240, 20):
            output.mux(video.encode(av.VideoFrame.from_ndarray(np.full((64, 64, 3), shade, np.uint8), "rgb24")))
        output.mux(video.encode(None))
    assert probe(path).container == muxer and sum(1 for _ in read_frames(path)) == 12


# --- 3. a long filename -----------------------------------------------------------------------------------------

def test_a_long_filename_is_not_a_500(client: TestClient, clip: Path) -> None:
    """Before, the client's suffix (".xxx…", 300 characters) was put on the temp file and the rename failed with
    ENAMETOOLONG: a 500."""
    answer = post_file(client, clip, name="a." + "x" * 300)
    assert answer.status_code == 200, answer.text
    assert answer.json()["media"]["container"].startswith("mov,mp4")


# --- 4. soft-binding queries are bounded ------------------------------------------------------------------------

def test_soft_binding_queries_are_bounded_and_not_echoed(client: TestClient) -> None:
    """Before, any size of value was parsed and echoed whole in the 400 (a 100 MB body: 1 GB of memory and a
    100 MB answer)."""
    alg = "org.hallmark.video.2"
    not_base64 = "!" * 1000
    answer = client.post("/matches/byBinding", json={"alg": alg, "value": not_base64})
    assert answer.status_code == 400 and answer.json()["code"] == "invalid_query"
    assert len(answer.content) < 600 and "(1000 characters)" in answer.json()["detail"]
    too_long = client.post("/matches/byBinding", json={"alg": alg, "value": "A" * 5000})
    assert too_long.status_code == 422 and len(too_long.content) < 1000
    assert client.get("/matches/byBinding", params={"alg": alg, "value": "A" * 5000}).status_code == 422
    huge = client.post("/matches/byBinding", content=b'{"alg": "x", "value": "' + b"A" * 1_000_000 + b'"}',
                       headers={"content-type": "application/json"})
    assert huge.status_code == 413 and len(huge.content) < 1000
    assert client.post("/matches/byBinding", content=b"{not json", headers={"content-type": "application/json"}) \
        .status_code == 422
    assert client.post("/matches/byBinding", json={"alg": alg, "value": "AAAAAAAAAAA="}).json() == {"matches": []}
    body = client.get("/openapi.json").json()["paths"]["/matches/byBinding"]["post"]["requestBody"]
    assert set(body["content"]["application/json"]["schema"]["properties"]) == {"alg", "value"}


def test_every_request_body_is_capped_before_a_route_reads_it(init: Initialized, clip: Path) -> None:
    """FastAPI reads a JSON route's body whole, whatever its Content-Type, before authentication or validation: a
    gigabyte posted to /v1/generations would be held in memory. HALLMARK_MAX_REQUEST_BYTES cuts every body off
    (declared or chunked) with a 413 problem; video uploads keep their own, larger limit."""
    capped = init.settings.model_copy(update={"max_request_bytes": 4096})
    auth = {"Authorization": f"Bearer {init.admin_key}"}
    oversized = json.dumps({"prompt": "a red kite over hills " * 400}).encode()
    assert len(oversized) > 4096
    with TestClient(create_app(capped, workers=0)) as client:
        declared = client.post("/v1/generations", content=oversized, headers={**auth, "content-type":
                                                                               "application/json"})
        assert declared.status_code == 413, declared.text
        problem = declared.json()
        assert problem["code"] == "payload_too_large" and "HALLMARK_MAX_REQUEST_BYTES" in problem["hint"]
        chunked = client.post("/v1/generations", content=iter([oversized[:3000], oversized[3000:]]),
                              headers={**auth, "content-type": "application/json"})
        assert chunked.status_code == 413 and chunked.json()["code"] == "payload_too_large"
        assert "4096 bytes" in chunked.json()["detail"]
        # Another Content-Type does not lift the cap, nor does leaving out the credentials.
        as_video = client.post("/v1/generations", content=oversized, headers={"content-type": "video/mp4"})
        assert as_video.status_code == 413
        # Endpoints that take no image have a 1 MiB cap whatever HALLMARK_MAX_REQUEST_BYTES says.
        accounts = client.post("/v1/accounts", content=b'{"name": "' + b"a" * (1024 * 1024) + b'"}',
                               headers={**auth, "content-type": "application/json"})
        assert accounts.status_code == 413 and "1048576 bytes" in accounts.json()["detail"]
        assert client.post("/v1/accounts", json={"name": "a" * 5000}, headers=auth).status_code == 422
        # A body under the cap is read and answered as usual.
        small = client.post("/v1/gate/check", json={"prompt": "a red kite over hills"}, headers=auth)
        assert small.status_code == 200, small.text
        # Uploads are larger than the JSON cap and still go through, up to HALLMARK_MAX_UPLOAD_BYTES.
        assert clip.stat().st_size > 4096
        verified = client.post("/v1/verify", files={"file": ("plain.mp4", clip.read_bytes(), "video/mp4")})
        assert verified.status_code == 200, verified.text
        assert verified.json()["watermark"]["detected"] is False
        # ... and are cut off there, chunked or declared (this data dir allows 8 MiB).
        big = 8 * 1024 * 1024 + 64 * 1024 + 1
        assert client.post("/v1/verify", content=b"\0" * big, headers={"content-type": "video/mp4"}).status_code == 413
        streamed = client.post("/v1/verify", content=iter([b"\0" * (big // 2), b"\0" * (big - big // 2)]),
                               headers={"content-type": "video/mp4"})
        assert streamed.status_code == 413 and streamed.json()["code"] == "payload_too_large"
        # The limit quoted is the upload's own, not that plus what multipart framing is allowed.
        assert f"the {8 * 1024 * 1024} bytes" in streamed.json()["detail"], streamed.text


def test_a_bad_soft_binding_value_is_quoted_in_part() -> None:
    with pytest.raises(InvalidInput) as error:
        payload_from_soft_binding_value("!" * 100_000)
    assert len(error.value.message) < 120 and "(100000 characters)" in error.value.message
    with pytest.raises(InvalidInput, match="'not base64!' is not base64"):
        payload_from_soft_binding_value("not base64!")


# --- 5. C2PA credentials in GIF, PNG and JPEG files ---------------------------------------------------------------

def _animated_gif(path: Path) -> Path:
    with av.open(str(path), "w") as output:
        stream = output.add_stream("gif", rate=5)
        stream.width = stream.height = 96
        stream.pix_fmt = "rgb8"
        for shade in range(0, 200, 40):
            frame = av.VideoFrame.from_ndarray(np.full((96, 96, 3), shade, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


def _sign_picture(hm: Hallmark, source: Path, target: Path, mime: str) -> Path:
    builder = c2pa.Builder(json.dumps(build_manifest(_facts(target.stem))))
    with source.open("rb") as src, target.open("w+b") as dst:
        builder.sign(hm.signer(), mime, src, dst)
    return target


def test_signed_gif_png_and_jpeg_have_their_credentials_found(client: TestClient, tmp_path: Path) -> None:
    """Before, a signed GIF (or PNG) was reported as having no credentials: its container was not mapped to a MIME
    type c2pa-rs reads."""
    assert c2pa_mime_for_container("gif") == "image/gif" and c2pa_mime_for_container("png_pipe") == "image/png"
    assert c2pa_mime_for_container("jpeg_pipe") == "image/jpeg" and c2pa_mime_for_container("matroska,webm") is None
    hm = client.app.state.hallmark
    gif = _sign_picture(hm, _animated_gif(tmp_path / "anim.gif"), tmp_path / "signed.gif", "image/gif")
    report = post_file(client, gif, content_type="image/gif").json()
    assert report["media"]["container"] == "gif"
    assert report["c2pa"]["present"] is True and report["c2pa"]["state"] == "Trusted", report["c2pa"]
    assert report["c2pa"]["manifest_label"]
    still = tmp_path / "still.png"
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(still)
    png = _sign_picture(hm, still, tmp_path / "signed.png", "image/png")
    report = post_file(client, png, content_type="image/png").json()
    assert report["c2pa"]["present"] is True and report["c2pa"]["state"] == "Trusted", report["c2pa"]
    # A JPEG too: saved as .jpg, FFmpeg took it for an image sequence, which is not allowed (a 422).
    photo = tmp_path / "still.jpg"
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(photo)
    jpeg = _sign_picture(hm, photo, tmp_path / "signed.jpg", "image/jpeg")
    answer = post_file(client, jpeg, content_type="image/jpeg")
    assert answer.status_code == 200, answer.text
    assert answer.json()["c2pa"]["state"] == "Trusted" and answer.json()["media"]["container"] == "jpeg_pipe"


# --- 6. a missing trust anchor ----------------------------------------------------------------------------------

def test_a_missing_trust_anchor_is_a_startup_error(init: Initialized, tmp_path: Path) -> None:
    """Before, `serve` started and every /v1/verify answered 500 naming the server path, with a hint to run
    `hallmark init`."""
    missing = tmp_path / "nonexistent" / "partner-root.pem"
    with pytest.raises(KeyMaterialError) as error:
        create_app(make_settings(init.settings.data_dir, init.settings.resolved_database_url,
                                 trust_anchors=[missing]), workers=0)
    assert str(missing) in error.value.message and "trust_anchors" in error.value.message
    assert "HALLMARK_TRUST_ANCHORS" in (error.value.hint or "") and "hallmark init" not in (error.value.hint or "")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(KeyMaterialError, match="not a PEM certificate"):
        Hallmark(make_settings(init.settings.data_dir, init.settings.resolved_database_url, trust_anchors=[garbage]))

    port = _closed_port()
    env = {**init.env, "HALLMARK_TRUST_ANCHORS": json.dumps([str(missing)])}
    result = run_cli(["serve", "--port", str(port), "--workers", "0"], env, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "partner-root.pem" in result.stderr and "trust_anchors" in result.stderr


def test_an_anchor_gone_after_start_names_no_server_path(init: Initialized, clip: Path, tmp_path: Path) -> None:
    anchor = tmp_path / "partner-root.pem"
    anchor.write_bytes(make_root_ca("Partner Studio").certificate_pem)
    settings = make_settings(init.settings.data_dir, init.settings.resolved_database_url, trust_anchors=[anchor])
    with TestClient(create_app(settings, workers=0)) as client:
        assert post_file(client, clip).status_code == 200
        anchor.unlink()
        answer = post_file(client, clip)
    assert answer.status_code == 503 and answer.json()["code"] == "key_material"
    assert str(tmp_path) not in answer.text and "partner-root" not in answer.text
    assert "hallmark init" not in answer.text
