"""The wired application: settings, database, keys, watermark method, trust store, gate and generator, built once
per process from the settings. The HTTP app, the CLI and the workers all hold one of these."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING
from dataclasses import replace
from pathlib import Path
from functools import cached_property
import c2pa
from sqlmodel import Session

from api.ratelimit import RateLimiter, make_limiter
from api.settings import Settings
from generator import VideoGenerator, load_generator
from guard.errors import KeyMaterialError
from guard.gate import Gate, Policy, RegistryDirectory, WorksIndexCache
from guard.gate.matching.semantic import set_cache_dir as set_embedding_cache_dir
from guard.likeness.sealing import TemplateSealer
from guard.likeness.service import Likeness
from guard.marks import WatermarkMethod, watermark_method
from guard.provenance import callback_signer, file_signer, load_sign_callback, trust_context
from guard.provenance.keys import load_certificates, read_secret
from policies import POLICY_DIR
from registry import Database

if TYPE_CHECKING:
    from api.verification import VerifyCounter  # imported lazily: it pulls in the verify pipeline

log = logging.getLogger("hallmark.api")
MIN_WATERMARK_KEY_BYTES = 16  # 128 bits, for the current watermark secret and every retired one
ANCHOR_SETTING_HINT = ("Correct or remove the file in trust_anchors (HALLMARK_TRUST_ANCHORS, a JSON list, or "
                       "hallmark.toml), then start again.")


def check_configured_anchors(files: list[Path]) -> None:
    """Each trust anchor named in the settings is a readable PEM certificate file. Checked when the server or a
    command starts, so that a wrong path is a configuration error said once to the operator, not a failure of
    every verification later."""
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KeyMaterialError(f"The trust anchor {path} named in the trust_anchors setting cannot be read "
                                   f"({exc.strerror or type(exc).__name__}).", hint=ANCHOR_SETTING_HINT) from exc
        try:
            load_certificates(data, f"trust anchor {path} named in the trust_anchors setting")
        except KeyMaterialError as exc:
            raise KeyMaterialError(exc.message, hint=ANCHOR_SETTING_HINT) from exc


class Hallmark:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.paths = settings.paths
        check_configured_anchors(list(settings.trust_anchors))  # before anything else: a configuration error
        self.db = Database(settings.resolved_database_url)
        set_embedding_cache_dir(self.paths.models)  # the gate's exported ONNX embedding model lives in the data dir
        self._generator: VideoGenerator | None = None
        self._generator_lock = threading.Lock()
        self._trust_lock = threading.Lock()
        self._trust: tuple[tuple[tuple[str, int], ...], list[bytes], c2pa.Context] | None = None

    # --- keys and trust
    @cached_property
    def watermark_key(self) -> bytes:
        if self.settings.watermark_key is not None:
            key = self.settings.watermark_key.get_secret_value().encode()
        else:
            key = read_secret(self.paths.watermark_key, "watermark secret key")
        if len(key) < MIN_WATERMARK_KEY_BYTES:
            raise KeyMaterialError("The watermark secret key is shorter than 128 bits.",
                                   hint="Move keys/watermark.key away and run `hallmark init` for a new one, or set "
                                   "HALLMARK_WATERMARK_KEY to a longer secret. Clips marked with the short key "
                                   "stop resolving: a key that short cannot tell their marks from forged ones.")
        return key

    @cached_property
    def watermark_retired_keys(self) -> list[tuple[str, bytes]]:
        """(label, key) of every earlier watermark secret, newest first: keys/watermark-retired/<time>.key
        (`hallmark keys rotate-watermark`), then HALLMARK_WATERMARK_RETIRED_KEYS. Detection reads with them too,
        so clips marked before a rotation still resolve; nothing is marked with them."""
        found = []
        if self.paths.watermark_retired.is_dir():
            files = sorted(self.paths.watermark_retired.glob("*.key"), key=lambda p: (p.stat().st_mtime, p.name),
                           reverse=True)
            found += [(path.stem, read_secret(path, "retired watermark key")) for path in files]
        found += [(f"HALLMARK_WATERMARK_RETIRED_KEYS[{index}]", secret.get_secret_value().encode())
                  for index, secret in enumerate(self.settings.watermark_retired_keys)]
        keys, seen = [], {self.watermark_key}
        for label, key in found:
            if len(key) < MIN_WATERMARK_KEY_BYTES:
                raise KeyMaterialError(f"The retired watermark key {label} is shorter than 128 bits.",
                                       hint="Remove it: a key that short (an empty one is public) would let anyone "
                                       "make marks that lead to your generations. Clips marked with it stop "
                                       "resolving.")
            if key not in seen:  # an interrupted rotation leaves the current key among the retired ones too
                seen.add(key)
                keys.append((label, key))
        return keys

    @cached_property
    def watermark(self) -> WatermarkMethod:
        """The method new clips are marked with, reading with the current key and every retired one."""
        return watermark_method(self.settings.watermark_method, self.watermark_key, self.watermark_retired_keys)

    @cached_property
    def current_key_watermark(self) -> WatermarkMethod:
        """The same method reading with the current key only: the gateway's read-back must find the mark this key
        just made, at the false-positive bound of one key (and without paying for the retired ones)."""
        return watermark_method(self.settings.watermark_method, self.watermark_key)

    def signer(self) -> c2pa.Signer:
        """The C2PA signer: keys/signer.key on disk, or the KMS/HSM callback named by HALLMARK_SIGNER_CALLBACK
        (then only the public chain, keys/signer.pem, is on disk)."""
        s = self.settings
        if s.signer_callback:
            chain = read_secret(self.paths.signer_chain, "C2PA signing certificate chain")
            return callback_signer(load_sign_callback(s.signer_callback), chain, alg=s.signer_alg, tsa_url=s.tsa_url)
        return file_signer(self.paths.signer_chain, self.paths.signer_key, tsa_url=s.tsa_url, alg=s.signer_alg)

    def trust_anchor_files(self) -> list[Path]:
        """Our root, the roots kept from before rotations and the operator's anchors (keys/trusted/*.pem), and
        the anchors named in the settings."""
        files = [self.paths.ca_cert] if self.paths.ca_cert.exists() else []
        if self.paths.trusted.is_dir():
            files += sorted(self.paths.trusted.glob("*.pem"))
        return files + list(self.settings.trust_anchors)

    def _trust_state(self) -> tuple[list[bytes], c2pa.Context]:
        # Rebuilt when an anchor file changes, so `hallmark keys rotate --ca` or `keys trust add` take effect in a
        # running server without a restart.
        files = self.trust_anchor_files()
        stamp = tuple((str(path), path.stat().st_mtime_ns if path.exists() else -1) for path in files)
        with self._trust_lock:
            if self._trust is None or self._trust[0] != stamp:
                if not files:
                    raise KeyMaterialError("There is no trust anchor (keys/ca.pem is missing).",
                                           hint="Run `hallmark init` or `hallmark keys init`.")
                self._trust = (stamp, *self._load_anchors(files))
            return self._trust[1], self._trust[2]

    @staticmethod
    def _load_anchors(files: list[Path]) -> tuple[list[bytes], c2pa.Context]:
        # The files were there at start; one gone since (or unreadable) fails every verification until fixed. The
        # error reaches HTTP clients too, so it names no server path: the log has it, for the operator.
        try:
            anchors = [path.read_bytes() for path in files]
        except OSError as exc:
            log.error("trust anchor %s cannot be read: %s", exc.filename, exc.strerror)
            raise KeyMaterialError("The server's trust store cannot be loaded: a trust anchor file is missing or "
                                   "unreadable.", status=503,
                                   hint="Retry later; the operator should check the trust anchors "
                                   "(`hallmark keys list`) and the server log.") from exc
        return anchors, trust_context(anchors)

    @property
    def trust_anchor_pems(self) -> list[bytes]:
        return self._trust_state()[0]

    @property
    def trust(self) -> c2pa.Context:
        return self._trust_state()[1]

    # --- likeness (face templates are sealed with a key of their own)
    @cached_property
    def face_key(self) -> bytes:
        if self.settings.face_key is not None:
            return self.settings.face_key.get_secret_value().encode()
        return read_secret(self.paths.face_key, "face template key")

    @cached_property
    def likeness(self) -> Likeness:
        return Likeness(self.db, TemplateSealer(self.face_key), self.settings.face_match_threshold)

    # --- policy
    @cached_property
    def policy(self) -> Policy:
        """The policies, validated (a PolicyError names the file and line of the first problem)."""
        policy = Policy.load(self.settings.policy_dir or POLICY_DIR)
        if not self.settings.semantic_matching:
            policy.match_settings = replace(policy.match_settings, semantic=False)
        return policy

    @property
    def policy_version(self) -> str:
        return self.policy.version

    @cached_property
    def works_index(self) -> WorksIndexCache:
        background = self.policy.background_vectors() if self.policy.match_settings.semantic else None
        return WorksIndexCache(self.policy.match_settings, background=background)

    def gate(self, session: Session) -> Gate:
        return Gate(RegistryDirectory(session, self.works_index), self.policy)

    # --- generation backend (loaded on first use; one per process)
    def generator(self) -> VideoGenerator:
        with self._generator_lock:
            if self._generator is None:
                s = self.settings
                self._generator = load_generator(
                    s.generator, tiny_dir=self.paths.tiny_model, path=s.generator_path,
                    device=s.generator_device, dtype=s.generator_dtype, steps=s.generator_steps,
                    guidance=s.generator_guidance,
                )
            return self._generator

    @cached_property
    def limiter(self) -> RateLimiter:
        url = self.settings.redis_url
        return make_limiter(url.get_secret_value() if url else None)

    @cached_property
    def verify_counter(self) -> "VerifyCounter":
        from api.verification import VerifyCounter

        return VerifyCounter()

    def close(self) -> None:
        if "verify_counter" in self.__dict__:  # only if this process verified anything
            self.verify_counter.flush(self)
        self.db.dispose()
