"""Known-answer tests: the audit log's pure math against published vectors, so its proofs and checkpoints
interoperate with other RFC 6962 / C2SP implementations (certificate-transparency test data; the
golang.org/x/mod/sumdb/note reference key and note)."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from registry.audit import merkle
from registry.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    open_checkpoint,
    open_note,
    parse_checkpoint_text,
    sign_checkpoint,
    sign_note,
    verifier_key,
)
from registry.audit.leaf import LeafError, commitment, decode_leaf, encode_leaf

# certificate-transparency testonly/constants.go: leaf inputs and the root of each prefix
CT_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                        "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = [bytes.fromhex(h) for h in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")]
CT_INCLUSION = {
    (0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
}
CT_CONSISTENCY = {
    (1, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
}

# golang.org/x/mod/sumdb/note note_test.go
GO_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = GO_TEXT + ("\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvq"
                     "fqdngotpRZb6KE6RyyBwJnAM=\n")


def leaf_hashes() -> list[bytes]:
    return [merkle.leaf_hash(leaf) for leaf in CT_LEAVES]


def stored_range_hashes(ranges: list[tuple[int, int]]) -> list[bytes]:
    """What the database serves: range hashes folded from complete-subtree nodes built by the Frontier."""
    frontier, nodes = merkle.Frontier(), {}
    for value in leaf_hashes():
        nodes.update({(level, position): h for level, position, h in frontier.append(value)})
    return [merkle.fold([nodes[node] for node in merkle.covering_nodes(start, end)]) for start, end in ranges]


def test_roots_match_the_ct_vectors() -> None:
    frontier = merkle.Frontier()
    assert frontier.root() == CT_ROOTS[0] == merkle.EMPTY_ROOT
    for size, value in enumerate(leaf_hashes(), 1):
        frontier.append(value)
        assert frontier.root() == CT_ROOTS[size]
        restored = merkle.Frontier.from_bytes(frontier.size, frontier.to_bytes())
        assert restored.root() == CT_ROOTS[size]
        assert stored_range_hashes([(0, size)]) == [CT_ROOTS[size]]


@pytest.mark.parametrize(("index", "size"), list(CT_INCLUSION))
def test_inclusion_proofs_match_the_ct_vectors(index: int, size: int) -> None:
    proof = stored_range_hashes(merkle.inclusion_ranges(index, size))
    assert [h.hex() for h in proof] == CT_INCLUSION[(index, size)]
    assert merkle.verify_inclusion(leaf_hashes()[index], index, size, proof, CT_ROOTS[size])
    assert not merkle.verify_inclusion(leaf_hashes()[index], index, size, proof, CT_ROOTS[size - 1])
    assert not merkle.verify_inclusion(leaf_hashes()[index], index + 1, size, proof, CT_ROOTS[size])


@pytest.mark.parametrize(("old", "new"), list(CT_CONSISTENCY))
def test_consistency_proofs_match_the_ct_vectors(old: int, new: int) -> None:
    proof = stored_range_hashes(merkle.consistency_ranges(old, new))
    assert [h.hex() for h in proof] == CT_CONSISTENCY[(old, new)]
    assert merkle.verify_consistency(old, new, CT_ROOTS[old], CT_ROOTS[new], proof)
    assert not merkle.verify_consistency(old, new, CT_ROOTS[old - 1], CT_ROOTS[new], proof)
    assert not merkle.verify_consistency(old, new, CT_ROOTS[old], CT_ROOTS[new], proof[:-1])
    assert merkle.verify_consistency(new, new, CT_ROOTS[new], CT_ROOTS[new], [])


def test_signed_notes_match_the_go_reference_byte_for_byte() -> None:
    seed = base64.b64decode(GO_SIGNER.split("+", 4)[4])[1:]  # the key material may itself hold "+"
    key = Ed25519PrivateKey.from_private_bytes(seed)
    public = base64.b64decode(GO_VERIFIER.split("+", 2)[2])[1:]
    assert verifier_key("PeterNeumann", public) == GO_VERIFIER
    assert sign_note(GO_TEXT, "PeterNeumann", key) == GO_NOTE  # Ed25519 is deterministic
    assert open_note(GO_NOTE, "PeterNeumann", public) == GO_TEXT
    with pytest.raises(CheckpointError, match="does not verify"):
        open_note(GO_NOTE.replace("cryptography", "cryptographY"), "PeterNeumann", public)
    with pytest.raises(CheckpointError, match="no signature by"):
        open_note(GO_NOTE, "PeterNeumann", bytes(32))


def test_checkpoint_notes_round_trip_and_refuse_tampering() -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    checkpoint = Checkpoint("example.com/audit", 20852163, bytes(range(32)))
    note = sign_checkpoint(checkpoint, key)
    lines = note.split("\n")
    assert lines[:4] == ["example.com/audit", "20852163", base64.b64encode(bytes(range(32))).decode(), ""]
    assert lines[4].startswith("\u2014 example.com/audit ")
    assert open_checkpoint(note, public) == checkpoint
    assert open_checkpoint(note, public, origin="example.com/audit") == checkpoint
    with pytest.raises(CheckpointError):
        open_checkpoint(note, public, origin="example.com/other")
    with pytest.raises(CheckpointError):
        open_checkpoint(note.replace("20852163", "20852162"), public)
    cosigned = note + "\u2014 witness.example/w1 " + base64.b64encode(b"\x00" * 68).decode() + "\n"
    assert open_checkpoint(cosigned, public) == checkpoint  # other keys' signatures are ignored
    for bad in ("a\n01\n" + "A" * 44 + "\n", "a\n1\nnot-base64\n", "a\n1\n", "a\n1\n" + "AAAA\n"):
        with pytest.raises(CheckpointError):
            parse_checkpoint_text(bad)
    with pytest.raises(CheckpointError):
        sign_checkpoint(Checkpoint("has space", 1, bytes(32)), key)


def test_leaves_are_canonical_and_commit_to_personal_data() -> None:
    from datetime import datetime, timezone

    salt = bytes(32)
    committed = commitment(salt, "a prompt")
    leaf = encode_leaf(index=3, at=datetime(2026, 1, 2, 3, 4, 5, 6789, tzinfo=timezone.utc), kind="k.x",
                       actor_id=None, subject="s", data={"b": 1, "a": [1.5, "é"]}, commitments={"prompt": committed})
    assert leaf == ('{"actor":null,"at":"2026-01-02T03:04:05.006789Z","data":{"a":[1.5,"é"],"b":1},"index":3,'
                    '"kind":"k.x","personal":{"prompt":"' + committed + '"},"subject":"s","v":1}').encode()
    assert decode_leaf(leaf)["personal"] == {"prompt": committed}
    assert committed != commitment(bytes([1]) + bytes(31), "a prompt") != commitment(salt, "a prompt!")
    with pytest.raises(LeafError):
        decode_leaf(leaf.replace(b'"index":3,', b'"index": 3,'))  # not canonical
    with pytest.raises(LeafError):
        decode_leaf(b'{"v":1}')


def test_flat_indexes_number_every_node_once_in_order() -> None:
    nodes = [(level, position) for level in range(13) for position in range(4096 >> level)]
    numbers = [merkle.flat_index(level, position) for level, position in nodes]
    assert sorted(numbers) == list(range(len(nodes)))  # a perfect tree of 4096 leaves: 0..8190, no gaps
    assert [merkle.flat_index(0, p) for p in range(5)] == [0, 2, 4, 6, 8]
    assert merkle.flat_index(1, 0) == 1 and merkle.flat_index(2, 0) == 3 and merkle.flat_index(1, 1) == 5


def test_leaf_parts_splice_to_exactly_the_canonical_leaf() -> None:
    from datetime import datetime, timezone

    from registry.audit.leaf import assemble_leaf, canonical, leaf_parts

    at = datetime(2026, 5, 6, 7, 8, 9, 10, tzinfo=timezone.utc)
    for data in ({}, {"index": -1, "z": {"index": 5}}, {"reasons": ["a", "b"], "ratio": 0.1, "emoji": "\U0001f600"}):
        head, tail = leaf_parts(at=at, kind="generation.denied", actor_id="a" * 32, subject=None, data=data,
                                commitments={"prompt": "0" * 64})
        for index in (0, 7, 1_000_000):
            assert assemble_leaf(head, index, tail) == canonical({
                "v": 1, "index": index, "at": "2026-05-06T07:08:09.000010Z", "kind": "generation.denied",
                "actor": "a" * 32, "subject": None, "data": data, "personal": {"prompt": "0" * 64}})


def test_the_fast_canonical_path_is_exactly_rfc8785() -> None:
    import random

    import rfc8785

    from registry.audit.leaf import MAX_SAFE_INTEGER, canonical, is_simple

    rng = random.Random(8785)
    alphabet = ["a", "Z", "0", " ", '"', "\\", "/", "\x00", "\x01", "\x08", "\t", "\n", "\x0c", "\r", "\x1f", "\x7f",
                "é", "ß", "\u2028", "\u2029", "\ufeff", "\uffff", "中", "\U0001f600", "\U00010000"]
    key_alphabet = ["a", "b", "B", "_", "~", "0", "-", " ", "\t", '"']

    def text(chars: list[str]) -> str:
        return "".join(rng.choice(chars) for _ in range(rng.randrange(0, 8)))

    def value(depth: int):  # type: ignore[no-untyped-def]
        kind = rng.randrange(7 if depth < 3 else 5)
        if kind == 0:
            return text(alphabet)
        if kind == 1:
            return rng.choice([0, 1, -1, 42, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, rng.randrange(-10**12, 10**12)])
        if kind == 2:
            return rng.choice([True, False])
        if kind == 3:
            return None
        if kind == 4:
            return text(alphabet)
        if kind == 5:
            return [value(depth + 1) for _ in range(rng.randrange(0, 4))]
        return {text(key_alphabet): value(depth + 1) for _ in range(rng.randrange(0, 5))}

    checked = 0
    for _ in range(3000):
        item = value(0)
        assert is_simple(item)
        assert canonical(item) == rfc8785.dumps(item), item
        checked += 1
    assert checked == 3000
    # what the fast path must not take: floats, big integers, non-ASCII keys (UTF-16 order differs)
    for item in (1.5, [1e21], 2**53, {"\U0001f600": 1, "\uffff": 2}, {"é": 1}):
        assert not is_simple(item)
    assert canonical({"\U0001f600": 1, "\uffff": 2}) == rfc8785.dumps({"\U0001f600": 1, "\uffff": 2})
    assert canonical([1.0, 1e21, 0.1]) == b"[1,1e+21,0.1]"


def test_verifier_keys_round_trip_even_when_their_base64_holds_a_plus() -> None:
    """A key's base64 holds "+" in about 2 of 3 keys; splitting the string on every "+" refused those keys (the
    export test failed or passed by the luck of the key drawn)."""
    from cryptography.hazmat.primitives import serialization

    from registry.audit.checkpoint import parse_verifier_key, verifier_key

    seen_plus = 0
    for seed in range(16):
        public = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32).public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        text = verifier_key("log.example/test", public)
        seen_plus += "+" in text.split("+", 2)[2]
        assert parse_verifier_key(text) == ("log.example/test", public)
    assert seen_plus > 0  # the case that failed is among them
