"""SM-profile checkpoints (issue 19): SM2 log signatures and SM2 cosignatures on C2SP
signed notes, their key ids spelled out, OpenSSL as the judge of the signatures both
ways, and every mix of hash and key type refused."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from relay.audit.checkpoint import (
    SM3_LINE,
    Checkpoint,
    KeyType,
    NoteKey,
    NoteSignature,
    SignedNote,
    cosign,
    log_tree_hash,
    open_checkpoint,
    origin_for,
    sign_checkpoint,
    sign_note,
)
from relay.audit.errors import CheckpointError
from relay.audit.merkle import SHA256_TREE, SM3_TREE, MemoryTree
from signing.sm2 import DEFAULT_SIGNER_ID, Sm2PrivateKey, Sm2PublicKey, der_to_raw, raw_to_der, sm3

ORIGIN = origin_for("320982")
WITNESS = origin_for("420106")
# GB/T 32918.2-2016 Annex A public key (the signature example's)
ANNEX_POINT = bytes.fromhex(
    "09F9DF311E5421A150DD7D161E4BC5C672179FAD1833FC076BB08FF356F35020"
    "CCEA490CE26775A52DC6EA718CC1AA600AED05FBF35E084A6632F6072DA9AD13"
)
TREE = MemoryTree([b"leaf %d" % i for i in range(5)], tree_hash=SM3_TREE)


@pytest.fixture(scope="module")
def sm2_key() -> Sm2PrivateKey:
    return Sm2PrivateKey.generate()


def _openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *args], capture_output=True, text=True, timeout=30, check=False, cwd=cwd
    )


def _openssl_verifies(public: Sm2PublicKey, raw: bytes, message: bytes, tmp: Path) -> bool:
    (tmp / "pub.pem").write_bytes(public.to_pem())
    (tmp / "m").write_bytes(message)
    (tmp / "sig").write_bytes(raw_to_der(raw))
    result = _openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-digest", "sm3",
        "-in", "m", "-sigfile", "sig", "-pkeyopt", f"distid:{DEFAULT_SIGNER_ID.decode()}",
        cwd=tmp,
    )  # fmt: skip
    return result.returncode == 0 and "Signature Verified Successfully" in result.stdout


def test_sm2_key_ids_are_spelled_out_in_the_protocol() -> None:
    public = Sm2PublicKey(ANNEX_POINT)
    log = NoteKey(ORIGIN, public, KeyType.SM2_SM3)
    witness = NoteKey(WITNESS, public, KeyType.SM2_COSIGNATURE_V1)
    point = b"\x04" + ANNEX_POINT
    expected_log = hashlib.sha256(
        ORIGIN.encode() + b"\n" + b"\xff" + b"tongban/sm2-sm3-note" + point
    ).digest()[:4]
    expected_witness = hashlib.sha256(
        WITNESS.encode() + b"\n" + b"\xff" + b"tongban/sm2-sm3-cosignature/v1" + point
    ).digest()[:4]
    assert log.key_id == expected_log
    assert witness.key_id == expected_witness
    material = base64.b64encode(b"\xfftongban/sm2-sm3-note" + point).decode()
    assert log.vkey() == f"{ORIGIN}+{expected_log.hex()}+{material}"
    assert NoteKey.from_vkey(log.vkey()) == log
    assert NoteKey.from_vkey(witness.vkey()) == witness
    assert log.tree_hash is SM3_TREE
    assert witness.key_type.cosigner


def test_bad_sm2_verifier_keys_are_refused() -> None:
    log = NoteKey(ORIGIN, Sm2PublicKey(ANNEX_POINT), KeyType.SM2_SM3)
    name, key_id, material = log.vkey().split("+", 2)
    with pytest.raises(CheckpointError, match="key id"):
        NoteKey.from_vkey(f"{name}+00000000+{material}")
    raw = base64.b64decode(material)
    for bad in (raw[:-1], raw[:-65] + b"\x02" + raw[-64:], raw[:-1] + bytes([raw[-1] ^ 1])):
        with pytest.raises(CheckpointError):
            NoteKey.from_vkey(f"{name}+{key_id}+{base64.b64encode(bad).decode()}")
    with pytest.raises(CheckpointError, match="matching public key"):
        NoteKey(ORIGIN, Sm2PublicKey(ANNEX_POINT), KeyType.ED25519)


def test_an_sm2_log_signs_sm3_checkpoints_that_openssl_verifies(
    sm2_key: Sm2PrivateKey, tmp_path: Path
) -> None:
    assert log_tree_hash(sm2_key) is SM3_TREE
    assert log_tree_hash(Ed25519PrivateKey.generate()) is SHA256_TREE
    checkpoint = Checkpoint.for_tree(ORIGIN, len(TREE), TREE.root(), SM3_TREE)
    note = sign_checkpoint(checkpoint, sm2_key).to_bytes()
    root = base64.b64encode(TREE.root()).decode()
    assert note.startswith(f"{ORIGIN}\n5\n{root}\nhash sm3\n\n— {ORIGIN} ".encode())
    key = NoteKey.for_private_key(ORIGIN, sm2_key)
    assert key.key_type is KeyType.SM2_SM3
    opened = open_checkpoint(note, key)
    assert opened.checkpoint == checkpoint
    assert opened.checkpoint.tree_hash is SM3_TREE
    (line,) = opened.note.signatures
    assert line.key_id == key.key_id
    assert len(line.signature) == 64
    assert _openssl_verifies(sm2_key.public_key, line.signature, checkpoint.text(), tmp_path)
    assert not _openssl_verifies(
        sm2_key.public_key, line.signature, checkpoint.text() + b"x", tmp_path
    )


def test_we_accept_an_openssl_made_sm2_checkpoint_signature(tmp_path: Path) -> None:
    assert _openssl("genpkey", "-algorithm", "SM2", "-out", "k.pem", cwd=tmp_path).returncode == 0
    private = Sm2PrivateKey.from_pem((tmp_path / "k.pem").read_bytes())
    text = Checkpoint.for_tree(ORIGIN, len(TREE), TREE.root(), SM3_TREE).text()
    (tmp_path / "m").write_bytes(text)
    signed = _openssl(
        "pkeyutl", "-sign", "-inkey", "k.pem", "-rawin", "-digest", "sm3", "-in", "m",
        "-out", "sig", "-pkeyopt", f"distid:{DEFAULT_SIGNER_ID.decode()}", cwd=tmp_path,
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    raw = der_to_raw((tmp_path / "sig").read_bytes())
    key = NoteKey(ORIGIN, private.public_key, KeyType.SM2_SM3)
    note = SignedNote(text, (NoteSignature(ORIGIN, key.key_id, raw),)).to_bytes()
    assert open_checkpoint(note, key).checkpoint.size == len(TREE)
    forged = raw[:-1] + bytes([raw[-1] ^ 1])
    with pytest.raises(CheckpointError, match="does not verify"):
        open_checkpoint(SignedNote(text, (NoteSignature(ORIGIN, key.key_id, forged),)), key)


def test_witnesses_cosign_with_their_own_key_type_both_ways(
    sm2_key: Sm2PrivateKey, tmp_path: Path
) -> None:
    ed_log = Ed25519PrivateKey.generate()
    sha_tree = MemoryTree([b"a", b"b", b"c"])
    default_note = sign_checkpoint(Checkpoint(WITNESS, 3, sha_tree.root()), ed_log).note
    sm_note = sign_checkpoint(
        Checkpoint.for_tree(ORIGIN, len(TREE), TREE.root(), SM3_TREE), sm2_key
    ).note
    ed_witness = Ed25519PrivateKey.generate()
    # an SM2 witness cosigns a default-profile checkpoint ...
    line = cosign(default_note.text, ORIGIN, sm2_key, at=1_780_000_000)
    sm2_cosigner = NoteKey.for_private_key(ORIGIN, sm2_key, KeyType.COSIGNATURE_V1)
    assert sm2_cosigner.key_type is KeyType.SM2_COSIGNATURE_V1
    assert line.key_id == sm2_cosigner.key_id
    assert len(line.signature) == 72
    opened = open_checkpoint(
        default_note.with_signatures(line), NoteKey.for_private_key(WITNESS, ed_log), [sm2_cosigner]
    )
    assert [(c.key, c.timestamp) for c in opened.cosignatures] == [(sm2_cosigner, 1_780_000_000)]
    message = b"cosignature/v1\ntime 1780000000\n" + default_note.text
    assert _openssl_verifies(sm2_key.public_key, line.signature[8:], message, tmp_path)
    # ... and an Ed25519 witness an SM-profile one (cosignature/v1, type 0x04)
    ed_line = cosign(sm_note.text, WITNESS, ed_witness, at=1_780_000_001)
    ed_cosigner = NoteKey.for_private_key(WITNESS, ed_witness, KeyType.COSIGNATURE_V1)
    assert ed_cosigner.key_type is KeyType.COSIGNATURE_V1
    opened = open_checkpoint(
        sm_note.with_signatures(ed_line), NoteKey.for_private_key(ORIGIN, sm2_key), [ed_cosigner]
    )
    assert [c.key for c in opened.cosignatures] == [ed_cosigner]
    # a tampered SM2 cosignature rejects the whole note
    bad = NoteSignature(line.name, line.key_id, line.signature[:-1] + b"\x00")
    with pytest.raises(CheckpointError, match="does not verify"):
        open_checkpoint(
            default_note.with_signatures(bad),
            NoteKey.for_private_key(WITNESS, ed_log),
            [sm2_cosigner],
        )


def test_a_checkpoint_whose_hash_is_not_its_log_keys_is_refused(sm2_key: Sm2PrivateKey) -> None:
    sm2 = NoteKey.for_private_key(ORIGIN, sm2_key)
    ed_private = Ed25519PrivateKey.generate()
    ed = NoteKey.for_private_key(ORIGIN, ed_private)
    sha_text = Checkpoint(ORIGIN, 5, MemoryTree([b"x"] * 5).root()).text()
    sm3_text = Checkpoint.for_tree(ORIGIN, len(TREE), TREE.root(), SM3_TREE).text()
    # an SM2 log key over a SHA-256 checkpoint, an Ed25519 one over an SM3 checkpoint
    for text, private, key in ((sha_text, sm2_key, sm2), (sm3_text, ed_private, ed)):
        note = SignedNote(text, (sign_note(text, ORIGIN, private),))
        with pytest.raises(CheckpointError, match="hashes with"):
            open_checkpoint(note, key)
    with pytest.raises(CheckpointError, match="log key"):
        open_checkpoint(
            sign_checkpoint(Checkpoint.parse(sm3_text), sm2_key).note,
            NoteKey.for_private_key(ORIGIN, sm2_key, KeyType.COSIGNATURE_V1),
        )


def test_the_tree_hash_line_and_the_empty_sm3_tree() -> None:
    empty = Checkpoint.for_tree(ORIGIN, 0, sm3(b""), SM3_TREE)
    assert (
        empty.text() == f"{ORIGIN}\n0\n{base64.b64encode(sm3(b'')).decode()}\n{SM3_LINE}\n".encode()
    )
    assert Checkpoint.parse(empty.text()) == empty
    with pytest.raises(CheckpointError, match="empty tree"):
        Checkpoint.for_tree(ORIGIN, 0, hashlib.sha256(b"").digest(), SM3_TREE)
    with pytest.raises(CheckpointError, match="empty tree"):
        Checkpoint(ORIGIN, 0, sm3(b""))
    root = base64.b64encode(TREE.root()).decode()
    for extensions in ("hash sha256\n", "hash sm3\nmore\n", "other\nhash sm3\n", "hash SM3\n"):
        with pytest.raises(CheckpointError, match="tree hash line"):
            Checkpoint.parse(f"{ORIGIN}\n5\n{root}\n{extensions}".encode())
