"""signing.sealed: the sealed-file format, tamper detection and constant memory."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sealing_stream_spec import spec_decrypt

from signing.errors import DecryptionFailed, MalformedInput
from signing.hpke import HpkePrivateKey, HpkeSuite, generate_hpke_key, hpke_open
from signing.sealed import MAGIC, SealedHeader, file_key_info, open_file, read_header, seal_file

NODE = "420106"
MULTI = 3 * 65536 + 777  # four stream segments


@pytest.fixture(scope="module")
def keys() -> dict[HpkeSuite, HpkePrivateKey]:
    return {suite: generate_hpke_key(suite) for suite in HpkeSuite}


def seal(plaintext: bytes, keys: list[HpkePrivateKey], node: str = NODE) -> bytes:
    out = io.BytesIO()
    seal_file(io.BytesIO(plaintext), out, [k.public_key() for k in keys], recipient_node=node)
    return out.getvalue()


def open_(sealed: bytes, keys: list[HpkePrivateKey]) -> bytes:
    out = io.BytesIO()
    open_file(io.BytesIO(sealed), out, keys)
    return out.getvalue()


def header_len(sealed: bytes) -> int:
    return len(read_header(io.BytesIO(sealed)).raw)


@pytest.mark.parametrize("size", [0, 1, 65_000, MULTI])
def test_sealed_to_both_suites_opens_with_either_key(
    keys: dict[HpkeSuite, HpkePrivateKey], size: int
) -> None:
    plaintext = os.urandom(size)
    sealed = seal(plaintext, list(keys.values()))
    for key in keys.values():
        assert open_(sealed, [key]) == plaintext


@pytest.mark.parametrize("suite", list(HpkeSuite))
def test_sealed_to_one_suite_opens_only_with_that_suite(
    keys: dict[HpkeSuite, HpkePrivateKey], suite: HpkeSuite
) -> None:
    sealed = seal(b"only one suite", [keys[suite]])
    assert open_(sealed, list(keys.values())) == b"only one suite"
    other = next(k for s, k in keys.items() if s is not suite)
    with pytest.raises(DecryptionFailed):
        open_(sealed, [other])


def test_header_layout_is_magic_length_and_canonical_json(
    keys: dict[HpkeSuite, HpkePrivateKey],
) -> None:
    sealed = seal(b"x", list(keys.values()))
    assert sealed[:7] == MAGIC == b"TBSEAL\x01"
    length = int.from_bytes(sealed[7:11], "big")
    body = json.loads(sealed[11 : 11 + length])
    assert body["v"] == 1
    assert body["recipient"] == NODE
    assert body["stream"] == "tink-aes256gcm-hkdf-sha256-64k"
    assert [e["kid"] for e in body["keys"]] == [k.public_key().kid for k in keys.values()]
    assert sealed[11 + length] == 40  # the stream header length byte follows


def test_enc_key_is_hpke_of_the_stream_key_and_stream_aad_is_the_header(
    keys: dict[HpkeSuite, HpkePrivateKey],
) -> None:
    """Open a sealed file by hand from the documented parts (independent of open_file)."""
    plaintext = os.urandom(70_000)
    sealed = seal(plaintext, [keys[HpkeSuite.X25519]])
    header = read_header(io.BytesIO(sealed))
    entry = header.entries[0]
    info = b'tongban/v1 file-key\x00{"kid":"%s","recipient":"%s","suite":"%s"}' % (
        entry.kid.encode(),
        NODE.encode(),
        entry.suite.value.encode(),
    )
    assert info == file_key_info(NODE, entry.kid, entry.suite)
    stream_key = hpke_open(entry.enc_key, keys[HpkeSuite.X25519], info=info)
    assert spec_decrypt(sealed[len(header.raw) :], stream_key, header.raw) == plaintext


def test_no_matching_key_is_refused(keys: dict[HpkeSuite, HpkePrivateKey]) -> None:
    sealed = seal(b"secret", list(keys.values()))
    strangers = [generate_hpke_key(suite) for suite in HpkeSuite]
    with pytest.raises(DecryptionFailed):
        open_(sealed, strangers)
    with pytest.raises(DecryptionFailed):
        open_(sealed, [])


def test_flipping_any_header_byte_is_detected(keys: dict[HpkeSuite, HpkePrivateKey]) -> None:
    sealed = seal(b"header bound to content", [keys[HpkeSuite.X25519]])
    for position in range(header_len(sealed)):
        tampered = bytearray(sealed)
        tampered[position] ^= 0x01
        with pytest.raises(DecryptionFailed):
            open_(bytes(tampered), [keys[HpkeSuite.X25519]])


def test_flipping_stream_bytes_is_detected(keys: dict[HpkeSuite, HpkePrivateKey]) -> None:
    key = keys[HpkeSuite.X25519]
    sealed = seal(os.urandom(MULTI), [key])
    start = header_len(sealed)
    for position in [start, start + 1, start + 40, start + 70_000, len(sealed) - 1]:
        tampered = bytearray(sealed)
        tampered[position] ^= 0x10
        with pytest.raises(DecryptionFailed):
            open_(bytes(tampered), [key])


@pytest.mark.parametrize("cut", [1, 16, 65536, 65536 + 100])
def test_truncation_is_detected(keys: dict[HpkeSuite, HpkePrivateKey], cut: int) -> None:
    key = keys[HpkeSuite.X25519]
    sealed = seal(os.urandom(MULTI), [key])
    with pytest.raises(DecryptionFailed):
        open_(sealed[:-cut], [key])


def test_truncation_inside_the_header_is_detected(keys: dict[HpkeSuite, HpkePrivateKey]) -> None:
    key = keys[HpkeSuite.X25519]
    sealed = seal(b"abc", [key])
    for cut in [0, 3, 7, 10, 11, header_len(sealed) - 1, header_len(sealed)]:
        with pytest.raises(DecryptionFailed):
            open_(sealed[:cut], [key])


def test_reordering_stream_segments_is_detected(keys: dict[HpkeSuite, HpkePrivateKey]) -> None:
    key = keys[HpkeSuite.X25519]
    sealed = seal(os.urandom(MULTI), [key])
    start = header_len(sealed) + 65536  # after the stream header (40) and segment 0 (65,496)
    one, two = sealed[start : start + 65536], sealed[start + 65536 : start + 2 * 65536]
    swapped = sealed[:start] + two + one + sealed[start + 2 * 65536 :]
    assert len(swapped) == len(sealed)
    with pytest.raises(DecryptionFailed):
        open_(swapped, [key])


def test_appended_bytes_are_detected(keys: dict[HpkeSuite, HpkePrivateKey]) -> None:
    key = keys[HpkeSuite.X25519]
    with pytest.raises(DecryptionFailed):
        open_(seal(b"abc", [key]) + b"\x00", [key])


def test_header_of_one_file_does_not_open_the_stream_of_another(
    keys: dict[HpkeSuite, HpkePrivateKey],
) -> None:
    key = keys[HpkeSuite.X25519]
    a, b = seal(b"first file", [key]), seal(b"other file", [key])
    with pytest.raises(DecryptionFailed):
        open_(a[: header_len(a)] + b[header_len(b) :], [key])


def test_entry_moved_to_another_recipient_node_does_not_open(
    keys: dict[HpkeSuite, HpkePrivateKey],
) -> None:
    key = keys[HpkeSuite.X25519]
    sealed = seal(b"for 420106", [key])
    header = read_header(io.BytesIO(sealed))
    forged = SealedHeader.build("320982", header.entries)
    with pytest.raises(DecryptionFailed):
        open_(forged.raw + sealed[len(header.raw) :], [key])


def test_non_canonical_header_json_is_refused(keys: dict[HpkeSuite, HpkePrivateKey]) -> None:
    sealed = seal(b"x", [keys[HpkeSuite.X25519]])
    header = read_header(io.BytesIO(sealed))
    body = json.dumps(json.loads(header.raw[11:]), indent=1).encode()
    raw = MAGIC + len(body).to_bytes(4, "big") + body
    with pytest.raises(MalformedInput):
        SealedHeader.parse(raw)
    with pytest.raises(DecryptionFailed):
        open_(raw + sealed[len(header.raw) :], [keys[HpkeSuite.X25519]])


def test_duplicate_kid_in_header_is_refused(keys: dict[HpkeSuite, HpkePrivateKey]) -> None:
    header = read_header(io.BytesIO(seal(b"x", [keys[HpkeSuite.X25519]])))
    with pytest.raises(MalformedInput):
        SealedHeader.build(NODE, header.entries * 2)


def test_seal_refuses_bad_node_id_and_empty_recipients(
    keys: dict[HpkeSuite, HpkePrivateKey],
) -> None:
    with pytest.raises(MalformedInput):
        seal_file(io.BytesIO(b""), io.BytesIO(), [], recipient_node=NODE)
    for node in ["42010", "000000", "abcdef"]:
        with pytest.raises(MalformedInput):
            seal(b"", [keys[HpkeSuite.X25519]], node=node)


def test_partial_plaintext_can_reach_dst_before_a_late_failure(
    keys: dict[HpkeSuite, HpkePrivateKey],
) -> None:
    """Documents why callers must write to a temporary file (see tongban open)."""
    key = keys[HpkeSuite.X25519]
    plaintext = os.urandom(MULTI)
    tampered = bytearray(seal(plaintext, [key]))
    tampered[-1] ^= 1
    out = io.BytesIO()
    with pytest.raises(DecryptionFailed):
        open_file(io.BytesIO(bytes(tampered)), out, [key])
    assert plaintext.startswith(out.getvalue())


_MEMORY_PROBE = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    from signing.hpke import HpkeSuite, generate_hpke_key
    from signing.sealed import open_file, seal_file

    work = Path(sys.argv[1])
    keys = [generate_hpke_key(s) for s in HpkeSuite]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with (work / "plain").open("rb") as src, (work / "sealed").open("wb") as dst:
        seal_file(src, dst, [k.public_key() for k in keys], recipient_node="420106")
    with (work / "sealed").open("rb") as src, (work / "opened").open("wb") as dst:
        open_file(src, dst, keys[1:])
    print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def test_sealing_and_opening_64_mib_runs_in_constant_memory(tmp_path: Path) -> None:
    with (tmp_path / "plain").open("wb") as f:
        for i in range(64):
            f.write(i.to_bytes(4, "big") * (1 << 18))  # 1 MiB blocks, each different
    result = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    before_kib, after_kib = result.stdout.split()
    assert sha256_file(tmp_path / "opened") == sha256_file(tmp_path / "plain")
    assert (tmp_path / "sealed").stat().st_size > 64 << 20
    growth_mib = (int(after_kib) - int(before_kib)) / 1024
    # Whole-file buffering would grow by >= 64 MiB; streaming stays at a few MiB.
    assert growth_mib < 24, f"peak RSS grew by {growth_mib:.1f} MiB for a 64 MiB file"
