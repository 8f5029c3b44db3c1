"""Build the SM3 Merkle vectors of this folder with OpenSSL's SM3 only (issue 19).

    python tests/vectors/merkle_sm3/generate.py   # rewrites inclusion.json, consistency.json

Nothing of tongban is imported: every hash is ``openssl dgst -sm3`` (GB/T 32905), and
trees and proofs follow the recursive definitions of RFC 9162 §2.1.1 (MTH), §2.1.3.1
(PATH) and §2.1.4.1 (PROOF/SUBPROOF) literally, with SM3 in place of SHA-256. The leaves
are the eight RFC 6962 test leaves transparency-dev uses. For every tree size 1..8 the
files hold every inclusion proof and every consistency proof (``wantErr`` false), and
mutations of each (``wantErr`` true, the shape of transparency-dev's vectors). A mutation
is kept only when it is not the honest value and the RFC 9162 §2.1.3.2 / §2.1.4.2
verification, transcribed below, rejects it: some mutations (a larger tree size whose
right edge the proof happens to cover, equal sizes with equal roots of another hash)
are accepted by that algorithm by design and are not errors.
"""

from __future__ import annotations

import base64
import functools
import json
import subprocess
from pathlib import Path

HERE = Path(__file__).parent
LEAVES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]  # fmt: skip
GBT_32905_EXAMPLES = {  # Annex A: the two examples, checked before anything is built
    b"abc": "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0",
    b"abcd" * 16: "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732",
}


@functools.cache
def sm3(data: bytes) -> bytes:
    out = subprocess.run(
        ["openssl", "dgst", "-sm3", "-binary"], input=data, capture_output=True, check=True,
        timeout=30,
    ).stdout  # fmt: skip
    assert len(out) == 32
    return out


def mth(d: tuple[bytes, ...]) -> bytes:
    n = len(d)
    if n == 0:
        return sm3(b"")
    if n == 1:
        return sm3(b"\x00" + d[0])
    k = 1 << ((n - 1).bit_length() - 1)
    return sm3(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: tuple[bytes, ...]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*path(m, d[:k]), mth(d[k:])]
    return [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: tuple[bytes, ...], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


def node(left: bytes, right: bytes) -> bytes:
    return sm3(b"\x01" + left + right)


def rfc_inclusion_ok(leaf: bytes, idx: int, size: int, proof: list[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2, step by step."""
    if idx >= size:
        return False
    fn, sn, r = idx, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def rfc_consistency_ok(m: int, n: int, proof: list[bytes], r1: bytes, r2: bytes) -> bool:
    """RFC 9162 §2.1.4.2, step by step (``m == n``: empty proof, equal roots)."""
    if not 0 < m <= n:
        return False
    if m == n:
        return not proof and r1 == r2
    if not proof:
        return False
    path = [r1, *proof] if m & (m - 1) == 0 else list(proof)
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == r1 and sr == r2


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def flip(data: bytes, bit: int = 0) -> bytes:
    return bytes([data[0] ^ (1 << bit)]) + data[1:]


def inclusion_vectors() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []

    def honest(idx: int, size: int, leaf: bytes, proof: list[bytes], root: bytes) -> bool:
        if not 0 <= idx < size <= len(LEAVES):
            return False
        d = tuple(LEAVES[:size])
        return (leaf, proof, root) == (sm3(b"\x00" + d[idx]), path(idx, d), mth(d))

    for size in range(1, len(LEAVES) + 1):
        d = tuple(LEAVES[:size])
        for idx in range(size):
            leaf, proof, root = sm3(b"\x00" + d[idx]), path(idx, d), mth(d)
            cases = {
                "happy path": (idx, size, leaf, proof, root),
                "wrong leaf": (idx, size, flip(leaf), proof, root),
                "leafIdx plus 1": (idx + 1, size, leaf, proof, root),
                "treeSize plus 1": (idx, size + 1, leaf, proof, root),
                "treeSize times 2": (idx, size * 2, leaf, proof, root),
                "wrong root": (idx, size, leaf, proof, flip(root, 3)),
                "empty root": (idx, size, leaf, proof, sm3(b"")),
                "trailing garbage": (idx, size, leaf, [*proof, sm3(b"garbage")], root),
                "preceding garbage": (idx, size, leaf, [sm3(b"garbage"), *proof], root),
                "sha-256 leaf hash": (idx, size, _sha256_leaf(d[idx]), proof, root),
            }
            if proof:
                cases["truncated proof"] = (idx, size, leaf, proof[:-1], root)
                cases["modified proof[0]"] = (idx, size, leaf, [flip(proof[0]), *proof[1:]], root)
            for desc, (i, s, lf, pr, rt) in cases.items():
                valid = honest(i, s, lf, pr, rt)
                if not valid and rfc_inclusion_ok(lf, i, s, pr, rt):
                    continue  # accepted by the RFC algorithm: not an error vector
                assert valid == rfc_inclusion_ok(lf, i, s, pr, rt)
                out.append({
                    "leafIdx": i, "treeSize": s, "root": b64(rt), "leafHash": b64(lf),
                    "proof": [b64(p) for p in pr], "desc": desc,
                    "wantErr": not valid,
                })  # fmt: skip
    return out


def consistency_vectors() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []

    def honest(m: int, n: int, proof: list[bytes], r1: bytes, r2: bytes) -> bool:
        if not 0 < m <= n <= len(LEAVES):
            return False
        d = tuple(LEAVES[:n])
        return (proof, r1, r2) == (subproof(m, d, True), mth(d[:m]), mth(d))

    for n in range(1, len(LEAVES) + 1):
        d = tuple(LEAVES[:n])
        for m in range(1, n + 1):
            proof, r1, r2 = subproof(m, d, True), mth(d[:m]), mth(d)
            cases = {
                "happy path": (m, n, proof, r1, r2),
                "wrong root1": (m, n, proof, flip(r1), r2),
                "wrong root2": (m, n, proof, r1, flip(r2)),
                "swapped roots": (m, n, proof, r2, r1),
                "size1 plus 1": (m + 1, n, proof, r1, r2),
                "size2 plus 1": (m, n + 1, proof, r1, r2),
                "trailing garbage": (m, n, [*proof, sm3(b"garbage")], r1, r2),
                "sha-256 roots": (m, n, proof, _sha256_root(d[:m]), _sha256_root(d)),
            }
            if proof:
                cases["truncated proof"] = (m, n, proof[:-1], r1, r2)
                cases["modified proof[0]"] = (m, n, [flip(proof[0]), *proof[1:]], r1, r2)
                cases["empty proof"] = (m, n, [], r1, r2)
            for desc, (s1, s2, pr, a, b) in cases.items():
                valid = honest(s1, s2, pr, a, b)
                if not valid and rfc_consistency_ok(s1, s2, pr, a, b):
                    continue  # accepted by the RFC algorithm: not an error vector
                assert valid == rfc_consistency_ok(s1, s2, pr, a, b)
                out.append({
                    "size1": s1, "size2": s2, "root1": b64(a), "root2": b64(b),
                    "proof": [b64(p) for p in pr], "desc": desc,
                    "wantErr": not valid,
                })  # fmt: skip
    return out


def _sha256_leaf(data: bytes) -> bytes:
    return _openssl_sha256(b"\x00" + data)


def _sha256_root(d: tuple[bytes, ...]) -> bytes:
    if len(d) == 1:
        return _sha256_leaf(d[0])
    k = 1 << ((len(d) - 1).bit_length() - 1)
    return _openssl_sha256(b"\x01" + _sha256_root(d[:k]) + _sha256_root(d[k:]))


@functools.cache
def _openssl_sha256(data: bytes) -> bytes:
    return subprocess.run(
        ["openssl", "dgst", "-sha256", "-binary"], input=data, capture_output=True, check=True,
        timeout=30,
    ).stdout  # fmt: skip


def main() -> None:
    for message, digest in GBT_32905_EXAMPLES.items():
        assert sm3(message).hex() == digest, "openssl's SM3 disagrees with GB/T 32905"
    roots = [b64(mth(tuple(LEAVES[:n]))) for n in range(len(LEAVES) + 1)]
    header = {
        "hash": "sm3",
        "source": "openssl dgst -sm3 and the RFC 9162 §2.1 definitions (generate.py)",
        "leaves": [leaf.hex() for leaf in LEAVES],
        "roots": roots,
    }  # fmt: skip
    for name, vectors in (
        ("inclusion", inclusion_vectors()),
        ("consistency", consistency_vectors()),
    ):
        lines = [json.dumps(v, separators=(",", ":")) for v in vectors]  # one per line
        head = json.dumps(header, indent=1, ensure_ascii=False)[:-2]
        text = head + ',\n "vectors": [\n' + ",\n".join(lines) + "\n ]\n}\n"
        (HERE / f"{name}.json").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
