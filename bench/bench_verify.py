"""Signature verification with and without the path-validation memo
(:mod:`signing.pathcache`), both measured in the same run.

- **cold** (the baseline): the memo is cleared before every call, so each call pays the
  full price (x5c parsing, chain and CRL signature checks), as before the memo existed;
- **warm**: the same call repeated with the memo filled (the relay's steady state: a
  handful of peers whose certificates and one CRL per root are seen over and over).

Measured for :func:`signing.certificates.validate_path` and
:func:`signing.jws.verify_compact` (an Ed25519 seal certificate issued by the dev
federation root, with a CRL). Then the relay's crypto against the bare primitives
(issue 12, goal >= 0.8): a warm ``verify_compact`` against one raw Ed25519 verify of the
same signature by libsodium (:mod:`signing.sodium`, what it calls) and by OpenSSL (what it
called before: the row's ratio is the speed-up), a ``sign_compact`` against OpenSSL's
raw Ed25519 signature of the same bytes (libsodium and the remembered header make the
whole JWS faster than the primitive it used), and ``hpke_open`` (ML-KEM-768+X25519)
against the library's HPKE decrypt with a key object built beforehand. Cold and warm
blocks alternate for ``ROUNDS`` rounds and the best rate of each is reported, to blunt the
noise of a shared machine; rates per second of this process's CPU time are given too
(less sensitive to other load).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

N = 400
ROUNDS = 3


def _rate(fn: Callable[[], object], before: Callable[[], None] | None) -> tuple[float, float]:
    """Calls per second of wall-clock time and of this process's CPU time."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(N):
        if before is not None:
            before()
        fn()
    return N / (time.perf_counter() - start), N / (time.process_time() - cpu)


def run() -> list[dict[str, object]]:
    from certs.pki import init_federation, issue_node
    from signing import pathcache
    from signing.certificates import Purpose, TrustBundle, validate_path
    from signing.jws import sign_compact, verify_compact
    from signing.keys import Signer

    now = datetime.now(UTC).replace(microsecond=0)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        init_federation(base / "fed", "Bench", now=now)
        issue_node(base / "fed", "420106", "bench office", "127.0.0.1", base / "n", now=now)
        bundle = TrustBundle.from_pem(
            (base / "fed" / "root.pem").read_bytes() + (base / "fed" / "crl.pem").read_bytes()
        )
        signer = Signer.from_pem(
            (base / "n" / "seal.key").read_bytes(), (base / "n" / "seal.pem").read_bytes()
        )
    token = sign_compact(b'{"bench":true}', signer, typ="bench+jws", at=now)
    cases: dict[str, Callable[[], object]] = {
        "validate_path": lambda: validate_path(signer.chain, bundle, purpose=Purpose.SEAL, at=now),
        "verify_compact": lambda: verify_compact(token, bundle, at=now, typ="bench+jws"),
    }
    rows: list[dict[str, object]] = []
    for name, fn in cases.items():
        cold = warm = (0.0, 0.0)
        for _ in range(ROUNDS):
            cold = max(cold, _rate(fn, pathcache.clear))
            fn()  # fill the memo
            warm = max(warm, _rate(fn, None))
        for label, (wall, cpu) in (("cold (memo cleared, baseline)", cold), ("warm", warm)):
            rows.append({"measure": f"{name} {label}", "calls/s": wall, "calls/cpu-s": cpu})
        rows.append(
            {
                "measure": f"{name} warm / cold",
                "ratio": warm[0] / cold[0],
                "cpu ratio": warm[1] / cold[1],
            }
        )
    rows += _against_primitives(token, bundle, now, signer)
    pathcache.clear()
    return rows


def _against_primitives(
    token: str, bundle: object, now: datetime, signer: Any
) -> list[dict[str, object]]:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
    from nacl.bindings import crypto_sign_open

    from signing.encoding import b64url_decode
    from signing.hpke import HpkeSuite, generate_hpke_key, hpke_open, hpke_seal
    from signing.jws import sign_compact, verify_compact

    verified = verify_compact(token, bundle, at=now, typ="bench+jws")  # type: ignore[arg-type]
    key = verified.signer.certificate.public_key()
    assert isinstance(key, Ed25519PublicKey)  # the bench's development PKI signs with Ed25519
    head, body, sig = token.split(".")
    signature, signing_input = b64url_decode(sig), f"{head}.{body}".encode()
    hpke_key = generate_hpke_key(HpkeSuite.MLKEM768_X25519)
    sealed = hpke_seal(b"x" * 1024, hpke_key.public_key(), info=b"bench")
    suite = Suite(KEM.MLKEM768_X25519, KDF.HKDF_SHA256, AEAD.AES_256_GCM)
    raw_key = hpke_key._key()
    raw_public = key.public_bytes_raw()

    def verify_jws() -> object:
        return verify_compact(token, bundle, at=now, typ="bench+jws")  # type: ignore[arg-type]

    pairs = {
        "JWS verify (warm) vs raw Ed25519 verify (libsodium, the one it uses)": (
            verify_jws,
            lambda: crypto_sign_open(signature + signing_input, raw_public),
        ),
        "JWS verify (warm) vs raw Ed25519 verify of OpenSSL (cryptography's, used before)": (
            verify_jws,
            lambda: key.verify(signature, signing_input),
        ),
        "JWS sign vs raw Ed25519 sign of OpenSSL (cryptography's, used before)": (
            lambda: sign_compact(b'{"bench":true}', signer, typ="bench+jws", at=now),
            lambda: signer.key.sign(signing_input),
        ),
        "hpke_open vs HPKE decrypt with a built key": (
            lambda: hpke_open(sealed, hpke_key, info=b"bench"),
            lambda: suite.decrypt(sealed, raw_key, info=b"bench"),
        ),
    }
    rows: list[dict[str, object]] = []
    for name, (ours, bare) in pairs.items():
        best_ours = best_bare = (0.0, 0.0)
        for _ in range(ROUNDS):
            best_ours = max(best_ours, _rate(ours, None))
            best_bare = max(best_bare, _rate(bare, None))
        rows.append(
            {
                "measure": name,
                "calls/s": best_ours[0],
                "calls/cpu-s": best_ours[1],
                "ratio": best_ours[0] / best_bare[0],
                "cpu ratio": best_ours[1] / best_bare[1],
            }
        )
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
