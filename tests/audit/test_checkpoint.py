"""Signed notes, checkpoints and cosignatures: the Go sumdb/note reference vector,
hand-built cosignature messages, and every way a checkpoint note must be refused."""

from __future__ import annotations

import base64
import dataclasses
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relay.audit.checkpoint import (
    Checkpoint,
    KeyType,
    NoteKey,
    SignedNote,
    cosign,
    node_id_of_origin,
    open_checkpoint,
    origin_for,
    sign_checkpoint,
    sign_note,
)
from relay.audit.errors import CheckpointError

# golang.org/x/mod/sumdb/note note_test.go: the reference key pair and signed note.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY_SEED = base64.b64decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz")[1:]
GO_TEXT = (
    b"If you think cryptography is the answer to your problem,\n"
    b"then you don't know what your problem is.\n"
)
GO_SIG_LINE = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdng"
    "otpRZb6KE6RyyBwJnAM=\n"
)

ORIGIN = "tongban.node/420106"
ROOT = hashlib.sha256(b"some root").digest()


@pytest.fixture(scope="module")
def log_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def witness_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_go_reference_key_id_and_vkey_round_trip() -> None:
    key = NoteKey.from_vkey(GO_VKEY)
    assert key.name == "PeterNeumann"
    assert key.key_id.hex() == "c74f20a3"
    assert key.vkey() == GO_VKEY


def test_go_reference_signature_is_reproduced_byte_for_byte() -> None:
    private = Ed25519PrivateKey.from_private_bytes(GO_SKEY_SEED)
    sig = sign_note(GO_TEXT, "PeterNeumann", private)
    assert sig.line() == GO_SIG_LINE
    note = SignedNote.parse(GO_TEXT + b"\n" + GO_SIG_LINE.encode())
    assert note.text == GO_TEXT
    assert note.signatures == (sig,)
    assert note.to_bytes() == GO_TEXT + b"\n" + GO_SIG_LINE.encode()


def test_checkpoint_text_is_the_c2sp_body() -> None:
    cp = Checkpoint(ORIGIN, 20852163, ROOT)
    assert cp.text() == (f"{ORIGIN}\n20852163\n{base64.b64encode(ROOT).decode()}\n".encode())
    assert Checkpoint.parse(cp.text()) == cp


def test_signed_checkpoint_round_trips(log_key: Ed25519PrivateKey) -> None:
    signed = sign_checkpoint(Checkpoint(ORIGIN, 7, ROOT), log_key)
    data = signed.to_bytes()
    assert data.startswith(
        Checkpoint(ORIGIN, 7, ROOT).text() + b"\n\xe2\x80\x94 " + ORIGIN.encode()
    )
    opened = open_checkpoint(data, NoteKey.for_private_key(ORIGIN, log_key))
    assert opened.checkpoint == Checkpoint(ORIGIN, 7, ROOT)


def test_cosignature_matches_a_hand_built_message(
    log_key: Ed25519PrivateKey, witness_key: Ed25519PrivateKey
) -> None:
    text = Checkpoint(ORIGIN, 7, ROOT).text()
    sig = cosign(text, "tongban.node/420981", witness_key, at=1679315147)
    pub = witness_key.public_key().public_bytes_raw()
    expected_id = hashlib.sha256(b"tongban.node/420981\n\x04" + pub).digest()[:4]
    assert sig.key_id == expected_id
    assert sig.signature[:8] == (1679315147).to_bytes(8, "big")
    # Raises if the signed message differs from the C2SP definition.
    witness_key.public_key().verify(sig.signature[8:], b"cosignature/v1\ntime 1679315147\n" + text)
    note = sign_checkpoint(Checkpoint(ORIGIN, 7, ROOT), log_key).note.with_signatures(sig)
    cosigner = NoteKey.for_private_key("tongban.node/420981", witness_key, KeyType.COSIGNATURE_V1)
    opened = open_checkpoint(note.to_bytes(), NoteKey.for_private_key(ORIGIN, log_key), [cosigner])
    assert [(c.key, c.timestamp) for c in opened.cosignatures] == [(cosigner, 1679315147)]


def test_unknown_signatures_are_ignored(log_key: Ed25519PrivateKey) -> None:
    stranger = Ed25519PrivateKey.generate()
    text = Checkpoint(ORIGIN, 7, ROOT).text()
    note = SignedNote(
        text, (sign_note(text, "someone.else", stranger), sign_note(text, ORIGIN, log_key))
    )
    open_checkpoint(note.to_bytes(), NoteKey.for_private_key(ORIGIN, log_key))


def test_missing_origin_signature_is_refused(log_key: Ed25519PrivateKey) -> None:
    stranger = Ed25519PrivateKey.generate()
    text = Checkpoint(ORIGIN, 7, ROOT).text()
    # Same name, other key: an unknown key, so the origin's signature is missing.
    note = SignedNote(text, (sign_note(text, ORIGIN, stranger),))
    with pytest.raises(CheckpointError, match="not signed by"):
        open_checkpoint(note.to_bytes(), NoteKey.for_private_key(ORIGIN, log_key))


def test_a_tampered_checkpoint_is_refused(log_key: Ed25519PrivateKey) -> None:
    data = sign_checkpoint(Checkpoint(ORIGIN, 7, ROOT), log_key).to_bytes()
    forged = data.replace(b"\n7\n", b"\n8\n", 1)
    with pytest.raises(CheckpointError, match="does not verify"):
        open_checkpoint(forged, NoteKey.for_private_key(ORIGIN, log_key))


def test_a_failing_known_cosignature_rejects_the_note(
    log_key: Ed25519PrivateKey, witness_key: Ed25519PrivateKey
) -> None:
    text = Checkpoint(ORIGIN, 7, ROOT).text()
    good = cosign(text, "w", witness_key, at=100)
    bad = type(good)(good.name, good.key_id, (101).to_bytes(8, "big") + good.signature[8:])
    note = sign_checkpoint(Checkpoint(ORIGIN, 7, ROOT), log_key).note.with_signatures(bad)
    cosigner = NoteKey.for_private_key("w", witness_key, KeyType.COSIGNATURE_V1)
    with pytest.raises(CheckpointError, match="does not verify"):
        open_checkpoint(note.to_bytes(), NoteKey.for_private_key(ORIGIN, log_key), [cosigner])


def test_the_origin_must_be_the_keys_name(log_key: Ed25519PrivateKey) -> None:
    data = sign_checkpoint(Checkpoint(ORIGIN, 7, ROOT), log_key).to_bytes()
    with pytest.raises(CheckpointError, match="origin"):
        open_checkpoint(data, NoteKey.for_private_key("tongban.node/420981", log_key))


@pytest.mark.parametrize(
    "text",
    [
        b"tongban.node/420106\n07\n" + base64.b64encode(ROOT) + b"\n",
        b"tongban.node/420106\n-1\n" + base64.b64encode(ROOT) + b"\n",
        b"tongban.node/420106\n7\n" + base64.b64encode(ROOT[:31]) + b"\n",
        b"tongban.node/420106\n7\n" + base64.b64encode(ROOT).rstrip(b"=") + b"\n",
        b"tongban.node/420106\n7\n" + base64.b64encode(ROOT),
        b"tongban.node/420106\n7\n",
        b"tongban.node/420106\n7\n" + base64.b64encode(ROOT) + b"\n\n",
        b"tongban.node/420106\n7\x00\n" + base64.b64encode(ROOT) + b"\n",
        b"\n7\n" + base64.b64encode(ROOT) + b"\n",
    ],
)
def test_malformed_checkpoint_texts_are_refused(text: bytes) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.parse(text)


@pytest.mark.parametrize(
    "data",
    [
        b"no signature block\n",
        GO_TEXT + b"\n" + GO_SIG_LINE.encode().replace("—".encode(), b"--"),
        GO_TEXT + b"\n" + GO_SIG_LINE.encode().rstrip(b"\n"),
        GO_TEXT + b"\n" + GO_SIG_LINE.encode().replace(b"=\n", b"\n"),
        GO_TEXT + b"\n" + "— PeterNeumann AAAA\n".encode(),
        GO_TEXT + b"\n" + GO_SIG_LINE.encode() + b"x" * 70000,
    ],
)
def test_malformed_notes_are_refused(data: bytes) -> None:
    with pytest.raises(CheckpointError):
        SignedNote.parse(data)


def test_origins_name_node_ids() -> None:
    assert origin_for("420106") == ORIGIN
    assert node_id_of_origin(ORIGIN) == "420106"
    for bad in ("tongban.node/42010", "example.com/log", "tongban.node/000000"):
        with pytest.raises(CheckpointError):
            node_id_of_origin(bad)


def test_a_repeated_line_of_a_known_key_that_fails_rejects_the_note(
    log_key: Ed25519PrivateKey,
) -> None:
    """A second line under the origin's name and key id with a zero signature was
    skipped as a repeat: signed-note rejects a note with any failing known-key line."""
    signed = sign_checkpoint(Checkpoint(ORIGIN, 7, ROOT), log_key)
    [good] = signed.note.signatures
    bad = dataclasses.replace(good, signature=bytes(len(good.signature)))
    forged = signed.note.with_signatures(bad)
    with pytest.raises(CheckpointError, match="does not verify"):
        open_checkpoint(forged.to_bytes(), NoteKey.for_private_key(ORIGIN, log_key))
    twice = signed.note.with_signatures(good)  # the same good line again still opens
    open_checkpoint(twice.to_bytes(), NoteKey.for_private_key(ORIGIN, log_key))
