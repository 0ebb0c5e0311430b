"""A minimal RFC 3161 timestamp authority over HTTP, for tests: it answers a TimeStampReq with a granted
TimeStampResp whose token is a CMS SignedData over a TSTInfo, signed by its own certificate (EKU timeStamping,
issued by its own root). Enough for c2pa-rs to stamp and validate manifests offline. Test-only: asn1crypto builds
the ASN.1 (cryptography has no CMS builder for arbitrary content types)."""

from __future__ import annotations

import datetime as dt
import hashlib
import http.server
import secrets
import threading
from dataclasses import dataclass

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

POLICY = "1.3.6.1.4.1.99999.1"  # a private-arc policy id for this test TSA


@dataclass
class TsaCredentials:
    root_pem: bytes
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def make_tsa(organization: str = "Test Time Authority") -> TsaCredentials:
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{organization} Root"),
                           x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{organization} TSA"),
                                     x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)]))
            .issuer_name(root_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256()))
    return TsaCredentials(root.public_bytes(serialization.Encoding.PEM), cert, key)


def timestamp_response(request_der: bytes, tsa: TsaCredentials) -> bytes:
    request = tsp.TimeStampReq.load(request_der)
    tst_info = tsp.TSTInfo({
        "version": "v1",
        "policy": POLICY,
        "message_imprint": request["message_imprint"],
        "serial_number": secrets.randbits(63),
        "gen_time": dt.datetime.now(dt.timezone.utc).replace(microsecond=0),
        "nonce": request["nonce"].native if request["nonce"].native is not None else None,
    })
    if tst_info["nonce"].native is None:
        del tst_info["nonce"]
    content = tst_info.dump()
    cert = asn1_x509.Certificate.load(tsa.cert.public_bytes(serialization.Encoding.DER))
    signed_attrs = cms.CMSAttributes([
        cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
        cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": tst_info["gen_time"].native})]}),
        cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(content).digest()]}),
        cms.CMSAttribute({"type": "signing_certificate_v2", "values": [tsp.SigningCertificateV2({
            "certs": [tsp.ESSCertIDv2({"hash_algorithm": {"algorithm": "sha256"},
                                       "cert_hash": hashlib.sha256(cert.dump()).digest()})]})]}),
    ])
    signature = tsa.key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
    signer = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
            "issuer": cert.issuer, "serial_number": cert.serial_number})}),
        "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
        "signed_attrs": signed_attrs,
        "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
        "signature": signature,
    })
    signed_data = cms.SignedData({
        "version": "v3",
        "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
        "encap_content_info": {"content_type": "tst_info", "content": core.ParsableOctetString(content)},
        "certificates": [cert] if request["cert_req"].native else [],
        "signer_infos": [signer],
    })
    response = tsp.TimeStampResp({
        "status": {"status": "granted"},
        "time_stamp_token": cms.ContentInfo({"content_type": "signed_data", "content": signed_data}),
    })
    return response.dump()


class LocalTsa:
    """`with LocalTsa() as tsa:` serves on 127.0.0.1 at `tsa.url` and counts `tsa.requests`."""

    def __init__(self) -> None:
        self.credentials = make_tsa()
        self.requests = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                owner.requests += 1
                answer = timestamp_response(body, owner.credentials)
                self.send_response(200)
                self.send_header("content-type", "application/timestamp-reply")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
                pass

        self._server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}/tsa"

    def __enter__(self) -> "LocalTsa":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
