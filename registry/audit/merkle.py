"""RFC 6962 / RFC 9162 Merkle tree math: hashing, the tree's right edge, proof shapes and proof checks.

Pure functions over bytes and integers, so `hallmark audit verify` (no database) and the log (the database) share
one implementation. Hand-written because it is a few dozen lines fixed by the RFC and no maintained Python library
offers RFC 9162 proof generation over an external node store.

Vocabulary: a *node* (level, position) is the root of the perfect subtree over leaves
[position * 2**level, (position + 1) * 2**level). Only such complete nodes are ever stored; the hash of any other
range the RFC's recursion asks for is folded from at most log2(n) of them, so no proof rehashes the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 9162 §2.1.1: MTH({}) = SHA-256()

Node = tuple[int, int]  # (level, position)
Range = tuple[int, int]  # leaves [start, end)


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly less than n (n >= 2): where RFC 6962 splits a tree of n leaves."""
    if n < 2:
        raise ValueError("a tree of fewer than two leaves has no split point")
    return 1 << ((n - 1).bit_length() - 1)


class Frontier:
    """The right edge of a tree: the roots of its perfect subtrees, largest (leftmost) first, one per set bit of
    the size. Appending a leaf costs one hash per merge (amortized one), and the root folds log2(n) hashes."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != bin(size).count("1"):
            raise ValueError(f"a frontier of size {size} has {bin(size).count('1')} hashes, not {len(hashes)}")
        self.size = size
        self.hashes = list(hashes)

    @classmethod
    def from_bytes(cls, size: int, blob: bytes) -> "Frontier":
        if len(blob) % HASH_SIZE:
            raise ValueError("a frontier is a whole number of 32-byte hashes")
        return cls(size, [blob[i:i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)])

    def to_bytes(self) -> bytes:
        return b"".join(self.hashes)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; returns every node it completes as (level, position, hash), the leaf itself first."""
        level, position, value = 0, self.size, leaf
        completed = [(level, position, value)]
        while position & 1:  # a right child: merge with its left sibling, the smallest subtree on the edge
            value = node_hash(self.hashes.pop(), value)
            level, position = level + 1, position >> 1
            completed.append((level, position, value))
        self.hashes.append(value)
        self.size += 1
        return completed

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        return fold(self.hashes)


def root_of(leaf_hashes: Iterable[bytes]) -> tuple[int, bytes]:
    """(size, root) of the tree over these leaf hashes, in one pass and O(log n) memory."""
    frontier = Frontier()
    for value in leaf_hashes:
        frontier.append(value)
    return frontier.size, frontier.root()


def fold(hashes: Sequence[bytes]) -> bytes:
    """The hash of a range given the complete subtrees that cover it, left to right (decreasing sizes)."""
    value = hashes[-1]
    for left in reversed(hashes[:-1]):
        value = node_hash(left, value)
    return value


def flat_index(level: int, position: int) -> int:
    """The node's number in the in-order ("flat tree") numbering: leaves are the even numbers 0, 2, 4, ...;
    the node over leaves [p * 2**L, (p + 1) * 2**L) is 2**(L+1) * p + 2**L - 1. One integer key per node lets the
    database fetch any set of nodes by primary key."""
    return (position << (level + 1)) + (1 << level) - 1


def covering_nodes(start: int, end: int) -> list[Node]:
    """The complete subtrees that cover [start, end), left to right. For every range the RFC recursion produces
    (start a multiple of the next power of two >= end - start), their right fold is MTH(D[start:end])."""
    if not 0 <= start < end:
        raise ValueError(f"empty or negative range [{start}, {end})")
    nodes: list[Node] = []
    while start < end:
        level = (start & -start).bit_length() - 1 if start else (end - start).bit_length() - 1
        while (1 << level) > end - start:
            level -= 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose hashes form PATH(index, D[0:size]) (RFC 9162 §2.1.3.1), from the leaf upwards."""
    if not 0 <= index < size:
        raise ValueError(f"index {index} is not in a tree of size {size}")
    ranges: list[Range] = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def consistency_ranges(old: int, new: int) -> list[Range]:
    """The ranges whose hashes form PROOF(old, D[0:new]) (RFC 9162 §2.1.4.1), in proof order."""
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof from size {old} to size {new}")
    ranges: list[Range] = []
    start, end, m, complete = 0, new, old, True
    while True:
        n = end - start
        if m == n:
            if not complete:
                ranges.append((start, end))
            break
        k = split_point(n)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start, m, complete = start + k, m - k, False
    ranges.reverse()
    return ranges


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2: does `proof` show the leaf hash `leaf` at `index` in the tree of `size` with `root`?"""
    if not 0 <= index < size:
        return False
    fn, sn, value = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            value = node_hash(sibling, value)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn, sn = fn >> 1, sn >> 1
        else:
            value = node_hash(value, sibling)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and value == root


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2: is the tree of size `old` with `old_root` a prefix of the one of `new` with `new_root`?"""
    if old == new:
        return not proof and old_root == new_root
    if not 0 < old < new or not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:  # old is a power of two: its root is the first node of the path
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    first = second = path[0]
    for value in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            first, second = node_hash(value, first), node_hash(value, second)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn, sn = fn >> 1, sn >> 1
        else:
            second = node_hash(second, value)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and first == old_root and second == new_root
