"""An exact in-memory face search index: every template as one row of a float32 matrix, unit length, searched by
one matrix product and a partial sort (top-k by cosine similarity).

Why not a vector index in the database: the templates are sealed at rest, so the database never holds a plaintext
vector it could index; a DB-side index (pgvector's HNSW/IVF) would need the embeddings in clear in the table and
in its index pages, and would exist only on PostgreSQL. Exact search over 100,000 templates is one (N x 128) x 128
product (~13 MFLOP, a few milliseconds), so an approximate index buys nothing at this scale and would give up
exactness, which matters for a consent check. Memory: 512 bytes per template (51 MB at 100,000)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from guard.likeness.analysis import EMBEDDING_DIM


@dataclass(frozen=True)
class Hit:
    seq: int  # the template's row
    subject_kind: str  # cameo | protected
    subject_id: str
    similarity: float


@dataclass(frozen=True)
class _Snapshot:
    matrix: np.ndarray  # (N, D) float32, unit rows
    seqs: np.ndarray  # (N,) int64
    kinds: tuple[str, ...]
    subjects: tuple[str, ...]


@dataclass(frozen=True)
class Entry:
    seq: int
    subject_kind: str
    subject_id: str
    vector: np.ndarray


class FaceIndex:
    """Readers search an immutable snapshot; `apply` builds a new one and swaps it in (no reader ever sees a
    half-applied change, and searches never wait for a refresh)."""

    def __init__(self) -> None:
        self._snapshot = _Snapshot(np.empty((0, EMBEDDING_DIM), np.float32), np.empty(0, np.int64), (), ())
        self._write_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._snapshot.seqs)

    def seqs(self) -> set[int]:
        return set(self._snapshot.seqs.tolist())

    def apply(self, removed: set[int], added: list[Entry]) -> None:
        with self._write_lock:
            old = self._snapshot
            keep = np.fromiter((seq not in removed for seq in old.seqs.tolist()), dtype=bool, count=len(old.seqs)) \
                if removed else np.ones(len(old.seqs), dtype=bool)
            vectors = [entry.vector.astype(np.float32).reshape(1, EMBEDDING_DIM) for entry in added]
            matrix = np.concatenate([old.matrix[keep], *vectors]) if vectors else old.matrix[keep]
            norms = np.linalg.norm(matrix[len(matrix) - len(vectors):], axis=1, keepdims=True) if vectors else None
            if norms is not None:
                matrix[len(matrix) - len(vectors):] /= np.maximum(norms, 1e-12)
            kept = np.flatnonzero(keep).tolist()
            self._snapshot = _Snapshot(
                matrix=np.ascontiguousarray(matrix),
                seqs=np.concatenate([old.seqs[keep], np.array([e.seq for e in added], dtype=np.int64)]),
                kinds=tuple(old.kinds[i] for i in kept) + tuple(e.subject_kind for e in added),
                subjects=tuple(old.subjects[i] for i in kept) + tuple(e.subject_id for e in added),
            )

    def search(self, queries: np.ndarray, k: int = 5) -> list[list[Hit]]:
        """For each query (unit vector), the k most similar templates, best first."""
        snapshot = self._snapshot
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
        if len(snapshot.seqs) == 0:
            return [[] for _ in range(len(queries))]
        similarities = _similarities(snapshot.matrix, queries)
        k = min(k, similarities.shape[1])
        results = []
        for row in similarities:
            top = np.argpartition(-row, k - 1)[:k] if k < len(row) else np.arange(len(row))
            top = top[np.argsort(-row[top])]
            results.append([Hit(int(snapshot.seqs[i]), snapshot.kinds[i], snapshot.subjects[i], float(row[i]))
                            for i in top])
        return results

    def search_above(self, queries: np.ndarray, threshold: float, limit: int = 100) -> list[list[Hit]]:
        """For each query, every template at or above `threshold` (at most `limit`), best first. This is what a
        consent check needs: all subjects that match, not just the k nearest templates (one subject may own many)."""
        snapshot = self._snapshot
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, EMBEDDING_DIM)
        if len(snapshot.seqs) == 0:
            return [[] for _ in range(len(queries))]
        similarities = _similarities(snapshot.matrix, queries)
        results = []
        for row in similarities:
            above = np.flatnonzero(row >= threshold)
            above = above[np.argsort(-row[above])][:limit]
            results.append([Hit(int(snapshot.seqs[i]), snapshot.kinds[i], snapshot.subjects[i], float(row[i]))
                            for i in above])
        return results


BLOCK_ROWS = 2048  # 1 MB of templates per product: stays in cache, and BLAS runs it on the calling thread


def _similarities(matrix: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(Q, N) cosine similarities, computed block by block. One large product would let OpenBLAS spread a
    memory-bound matrix-vector product over every core; measured on the shared 2-core machine at 100,000
    templates that was 3-4x slower than these single-threaded blocks, and it would take cores from generation."""
    out = np.empty((len(queries), len(matrix)), dtype=np.float32)
    transposed = np.ascontiguousarray(queries.T)
    for start in range(0, len(matrix), BLOCK_ROWS):
        block = matrix[start:start + BLOCK_ROWS]
        out[:, start:start + len(block)] = (block @ transposed).T
    return out
