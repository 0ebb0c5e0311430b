"""The one settings object: environment variables `HALLMARK_*`, then an optional TOML config file, then defaults.

Everything the other packages need is read here and passed to them as plain values, so `guard`, `generator` and
`registry` never read the environment themselves.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from guard.errors import InvalidInput


TRAINING_MINING_DEFAULTS = {"cawg.ai_training": "notAllowed", "cawg.ai_generative_training": "notAllowed",
                            "cawg.data_mining": "notAllowed"}


def _config_file() -> Path | None:
    """The TOML config file: `HALLMARK_CONFIG`, else `hallmark.toml` in the current directory if present."""
    explicit = os.environ.get("HALLMARK_CONFIG")
    if explicit:
        if not Path(explicit).is_file():  # named on purpose: running on defaults instead would hide the mistake
            raise InvalidInput(f"HALLMARK_CONFIG names {explicit}, which is not a file.",
                               hint="Fix the path, or unset HALLMARK_CONFIG to use ./hallmark.toml if present.")
        return Path(explicit)
    local = Path("hallmark.toml")
    return local if local.is_file() else None


def _check_config_keys(path: Path, known: set[str]) -> None:
    """A key the settings do not have (`prot = 9001`) is a typo, not something to ignore: the server would run on
    the default and the operator would not know why."""
    try:
        entries = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"{path} is not a readable TOML file: {exc}", hint="Fix it or point HALLMARK_CONFIG "
                           "elsewhere.") from exc
    for key in entries:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            raise InvalidInput(f"{path}: {key!r} is not a Hallmark setting.",
                               hint=f"Did you mean {close[0]!r}?" if close else "`hallmark config` lists them all.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HALLMARK_", extra="ignore", frozen=True)

    # --- where things live
    data_dir: Path = Field(Path(".hallmark"), description="Database, keys, models and outputs.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite file in the data dir.")

    # --- who we are (shown in the visible mark and in the C2PA manifest)
    operator_name: str = Field("Hallmark", max_length=64)

    # --- generation backend
    generator: str = Field("tiny", description="'tiny' (built-in) or 'diffusers' (a local pipeline directory).")
    generator_path: Path | None = Field(None, description="Local diffusers pipeline directory for 'diffusers'.")
    generator_device: str = "cpu"
    generator_dtype: str = "float32"
    generator_steps: int | None = Field(None, ge=1, le=500)
    generator_guidance: float | None = Field(None, ge=0.0, le=50.0)

    # --- request limits (bad input is refused with a clear message)
    max_prompt_chars: int = Field(2000, ge=1)
    min_side: int = Field(128, ge=16)
    max_side: int = Field(1920, ge=16)
    max_frames: int = Field(481, ge=1)
    min_fps: float = Field(1.0, gt=0)
    max_fps: float = Field(60.0, gt=0)
    max_upload_bytes: int = Field(512 * 1024 * 1024, ge=1, description="Largest accepted verify upload.")
    max_request_bytes: int = Field(32 * 1024 * 1024, ge=1024, description="Largest JSON body of the endpoints "
                                   "that take base64 images (generations, gate checks, works; room for one 20 MiB "
                                   "image); other JSON bodies are capped at 1 MiB.")
    verify_max_seconds: float = Field(30.0, ge=0.0, description="Seconds of an uploaded clip (from its start) the "
                                      "watermark detector reads; 0 reads all of it.")

    # --- marks
    watermark_method: str = Field("hallmark", description="Invisible watermark method used for new clips.")
    watermark_key: SecretStr | None = Field(None, description="Overrides the data dir's watermark key file.")
    watermark_retired_keys: list[SecretStr] = Field(
        default_factory=list, description="Earlier watermark secrets, read with but never marked with, so that clips "
        "marked before a rotation still resolve (besides keys/watermark-retired/*.key).")
    visible_text: str = Field("AI-generated", max_length=48)
    visible_opacity: float = Field(0.45, gt=0.0, le=1.0)
    visible_scale: float = Field(1.0, gt=0.1, le=4.0)
    output_crf: int = Field(18, ge=0, le=51)
    output_preset: str = "medium"

    # --- policy and matching
    policy_dir: Path | None = Field(None, description="Cedar policies and lists; default: the packaged policies/.")
    semantic_matching: bool = Field(True, description="Match paraphrases with the sentence-embedding model.")

    # --- provenance
    trust_anchors: list[Path] = Field(default_factory=list, description="Extra PEM root certificates to trust.")
    tsa_url: str | None = Field(None, description="RFC 3161 timestamp authority (off by default).")
    signer_callback: str | None = Field(None, description="KMS/HSM signing function `package.module:function` "
                                        "(bytes -> signature); the key never touches disk. The certificate chain "
                                        "stays in keys/signer.pem.")
    signer_alg: str = Field("es256", description="Signature algorithm of the signing key (es256, es384, ps256, ...).")
    manifest_include_prompt: bool = Field(False, description="Publish the prompt text in the C2PA manifest.")
    training_mining: dict[str, str] = Field(
        default_factory=lambda: dict(TRAINING_MINING_DEFAULTS),
        description="CAWG training/mining entries written into every manifest (allowed, notAllowed, constrained); "
                    "a JSON object, whose entries override the defaults one by one.")

    # --- likeness (cameos, protected persons)
    face_key: SecretStr | None = Field(None, description="Overrides the data dir's face template key file.")
    face_match_threshold: float = Field(0.96, gt=0.0, lt=1.0,
                                        description="Cosine similarity at which two faces are the same person.")
    cameo_challenge_moves: list[str] = Field(["turn_left", "turn_right", "look_up", "look_down"],
                                             description="Head movements a registration challenge draws from.")
    cameo_challenge_length: int = Field(3, ge=1, le=8)
    cameo_challenge_ttl_seconds: int = Field(300, ge=10, le=3600)
    cameo_challenges_per_hour: int = Field(5, ge=1, description="Challenges (each allows one verification upload) "
                                           "issued per cameo per hour; a registration issues one too.")
    cameo_challenges_per_account_hour: int = Field(10, ge=1, description="Challenges issued per account per hour, "
                                                   "over all its cameos.")
    cameo_max_video_seconds: float = Field(20.0, gt=1.0, le=120.0)
    output_face_samples_per_second: float = Field(2.0, gt=0.0, le=30.0)

    # --- audit log
    audit_origin: str = Field("hallmark.local/audit", description="The audit log's identity: the origin line of "
                              "its checkpoints and its signing key's name, e.g. example.com/hallmark-audit.")
    audit_checkpoint_seconds: float = Field(300.0, ge=0.0, description="How often `serve` signs a checkpoint if "
                                            "the log grew (0: only on demand).")

    # --- rate limits (fixed one-minute windows; 0 turns a limit off)
    redis_url: SecretStr | None = Field(None, description="Redis URL (redis://host:6379/0) for rate-limit "
                                        "counters shared by every API process; default: each process counts.")
    rate_limit_public_per_minute: int = Field(60, ge=0, description="Verify and soft-binding resolution "
                                              "requests per client address per minute.")
    rate_limit_generations_per_minute: int = Field(30, ge=0, description="Generation requests per account per "
                                                   "minute.")

    # --- serving
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=0, le=32, description="In-process generation workers in `serve` (0: none).")
    verify_concurrency: int = Field(0, ge=0, le=64, description="Verifications (POST /v1/verify, /matches/"
                                    "byContent) run at once per API process; 0: half the cores, at least 2.")
    verify_queue_seconds: float = Field(30.0, ge=0.0, le=600.0, description="How long an upload waits for a free "
                                        "verification slot before the answer is 503 with Retry-After.")

    @field_validator("cameo_challenge_moves", mode="after")
    @classmethod
    def _known_moves(cls, value: list[str]) -> list[str]:
        known = {"turn_left", "turn_right", "look_up", "look_down"}
        if len(set(value)) < 2 or not set(value) <= known:
            raise ValueError(f"needs at least two distinct moves from {sorted(known)}")
        return value

    @field_validator("redis_url", mode="after")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        # Checked here, not on the first request: a malformed URL made every rate-limited endpoint answer 500.
        if value is not None and not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix:// (e.g. redis://127.0.0.1:6379/0)")
        return value

    @field_validator("training_mining", mode="after")
    @classmethod
    def _training_uses(cls, value: dict[str, str]) -> dict[str, str]:
        for key, use in value.items():
            if use not in ("allowed", "notAllowed", "constrained"):
                raise ValueError(f"{key}: use must be allowed, notAllowed or constrained, not {use!r}")
        # Setting one entry (e.g. {"cawg.data_mining": "allowed"}) must not silently drop the other two from every
        # manifest: what is not given keeps its default.
        return {**TRAINING_MINING_DEFAULTS, **value}

    @field_validator("audit_origin", mode="after")
    @classmethod
    def _origin(cls, value: str) -> str:
        if not value or any(c.isspace() or c == "+" for c in value):
            raise ValueError("the audit origin must be non-empty, without spaces or '+' (e.g. example.com/audit)")
        return value

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = _config_file()
        if config is not None:
            _check_config_keys(config, set(settings_cls.model_fields))
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config))
        return tuple(sources)

    # --- derived paths (one place, so every component agrees on the layout of the data dir)
    @cached_property
    def paths(self) -> "DataPaths":
        return DataPaths(self.data_dir)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.paths.database}"

    def public_view(self) -> dict[str, Any]:
        """The settings as a dict safe to print: secrets masked, database password hidden."""
        view = self.model_dump(mode="json")
        for secret in ("watermark_key", "face_key"):
            if view.get(secret):
                view[secret] = "**********"
        view["watermark_retired_keys"] = ["**********" for _ in self.watermark_retired_keys]
        view["database_url"] = _mask_url(self.resolved_database_url)
        return view


class DataPaths:
    """The layout of the data dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.database = root / "hallmark.db"
        self.keys = root / "keys"
        self.models = root / "models"
        self.outputs = root / "outputs"
        self.tmp = root / "tmp"
        self.inputs = root / "inputs"  # reference images of queued and running jobs (deleted when a job ends)
        self.ca_cert = self.keys / "ca.pem"
        self.ca_key = self.keys / "ca.key"
        self.signer_chain = self.keys / "signer.pem"
        self.signer_key = self.keys / "signer.key"
        self.log_key = self.keys / "log.key"
        self.log_pub = self.keys / "log.pub"
        self.watermark_key = self.keys / "watermark.key"
        self.watermark_retired = self.keys / "watermark-retired"  # <time retired>.key: still read with, never marked
        self.face_key = self.keys / "face.key"
        self.trusted = self.keys / "trusted"  # extra trust anchors: roots kept from rotations, operator roots
        self.retired = self.keys / "retired"
        self.tiny_model = self.models / "tiny-wan"


def _mask_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported by the database layer; here we only avoid leaking it
        return "<unparsable>"


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
