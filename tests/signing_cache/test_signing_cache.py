"""The memo of signature checks in path validation never turns a refusal into an
acceptance: revocation, expiry, stale CRLs and same-named forgeries are refused after
the genuine path was accepted (and cached), and the cache is demonstrably used."""

from __future__ import annotations

import sys
import threading
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from certs.pki import revoke
from signing import pathcache
from signing.certificates import Purpose, TrustBundle, validate_path
from signing.errors import CertificateRejected, InvalidSignature
from signing.jws import sign_compact, verify_compact
from signing.keys import Signer

TYP = "test+jws"


def _reason(chain, bundle, at, **kw) -> str:
    with pytest.raises(CertificateRejected) as info:
        validate_path(chain, bundle, purpose=Purpose.SEAL, at=at, **kw)
    return info.value.reason


def _resign(
    cert: x509.Certificate,
    key: CertificateIssuerPrivateKeyTypes,
    *,
    public_key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | None = None,
) -> x509.Certificate:
    """The same certificate (names, serial, validity, extensions) signed by ``key``."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(cert.issuer)
        .public_key(public_key or cert.public_key())  # type: ignore[arg-type]
        .serial_number(cert.serial_number)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    for ext in cert.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    return builder.sign(key, hashes.SHA256())


def _forged_crl(issuer: x509.Certificate, key: ec.EllipticCurvePrivateKey, now: datetime):
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now)  # newer than the genuine one: it is the one consulted
        .next_update(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )


def test_second_validation_of_a_path_hits_the_cache(fed) -> None:
    bundle, chain = fed.bundle(), fed.signer().chain
    validate_path(chain, bundle, purpose=Purpose.SEAL, at=fed.now)
    first = pathcache.stats()
    assert first["issued_by"]["size"] == 1
    assert first["crl"]["size"] == 1
    assert first["path"]["size"] == 1
    validate_path(chain, bundle, purpose=Purpose.SEAL, at=fed.now + timedelta(minutes=1))
    second = pathcache.stats()
    # issue 12: the whole result is remembered with its validity window, so a second
    # validation inside that window checks no signature again
    assert second["path"]["hits"] == first["path"]["hits"] + 1
    assert second["issued_by"] == first["issued_by"]
    assert second["crl"] == first["crl"]
    # another purpose is another question: the signature memo answers it
    with pytest.raises(CertificateRejected):
        validate_path(chain, bundle, purpose=Purpose.TLS_PEER, at=fed.now)
    assert pathcache.stats()["issued_by"]["hits"] == first["issued_by"]["hits"] + 1


def test_revoked_certificate_is_refused_after_the_same_path_was_accepted(fed) -> None:
    signer = fed.signer()
    token = sign_compact(b"x", signer, typ=TYP, at=fed.now)
    old_bundle = fed.bundle()
    assert verify_compact(token, old_bundle, at=fed.now, typ=TYP).signer.node_id == "420106"
    validate_path(signer.chain, old_bundle, purpose=Purpose.SEAL, at=fed.now)  # cached now
    revoke(fed.directory, (fed.node_dir / "seal.pem").read_bytes(), now=fed.now)
    new_bundle = fed.bundle()  # rebuilt, as BundleSource does when crl.pem changes
    crl_misses = pathcache.stats()["crl"]["misses"]
    assert _reason(signer.chain, new_bundle, fed.now) == "revoked"
    assert pathcache.stats()["crl"]["misses"] == crl_misses + 1  # new CRL checked afresh
    with pytest.raises(InvalidSignature):
        verify_compact(token, new_bundle, at=fed.now, typ=TYP)


def test_expired_certificate_is_refused_at_a_later_time_after_being_accepted(fed) -> None:
    signer = fed.signer()
    token = sign_compact(b"x", signer, typ=TYP, at=fed.now)
    bundle = fed.bundle()
    verify_compact(token, bundle, at=fed.now, typ=TYP)
    validate_path(signer.chain, bundle, purpose=Purpose.SEAL, at=fed.now)
    later = signer.chain[0].not_valid_after_utc + timedelta(seconds=1)
    assert _reason(signer.chain, bundle, later) == "expired"
    with pytest.raises(InvalidSignature):
        verify_compact(token, bundle, at=later, typ=TYP)
    earlier = signer.chain[0].not_valid_before_utc - timedelta(seconds=1)
    assert _reason(signer.chain, bundle, earlier) == "not-yet-valid"


def test_stale_crl_is_refused_after_it_was_accepted_and_cached(fed) -> None:
    bundle, chain = fed.bundle(), fed.signer().chain
    validate_path(chain, bundle, purpose=Purpose.SEAL, at=fed.now)
    next_update = bundle.crls[0].next_update_utc
    assert next_update is not None
    assert _reason(chain, bundle, next_update + timedelta(seconds=1)) == "crl-invalid"


def test_wrong_node_and_wrong_purpose_are_still_checked_on_a_cached_path(fed) -> None:
    bundle, chain = fed.bundle(), fed.signer().chain
    validate_path(chain, bundle, purpose=Purpose.SEAL, at=fed.now, node_id="420106")
    assert _reason(chain, bundle, fed.now, node_id="420981") == "wrong-node"
    with pytest.raises(CertificateRejected) as info:
        validate_path(chain, bundle, purpose=Purpose.TLS_PEER, at=fed.now)
    assert info.value.reason == "wrong-purpose"


def test_leaf_forged_under_a_same_named_root_is_refused_while_the_genuine_one_is_cached(
    fed,
) -> None:
    signer, bundle = fed.signer(), fed.bundle()
    genuine_leaf, genuine_root = signer.chain[0], bundle.roots[0]
    validate_path(signer.chain, bundle, purpose=Purpose.SEAL, at=fed.now)
    forger = ec.generate_private_key(ec.SECP256R1())
    # identical to the cached leaf except for the signature
    forged_leaf = _resign(genuine_leaf, forger)
    assert forged_leaf.tbs_certificate_bytes == genuine_leaf.tbs_certificate_bytes
    assert _reason([forged_leaf], bundle, fed.now) == "untrusted-root"
    forged_root = _resign(genuine_root, forger, public_key=forger.public_key())
    assert forged_root.subject == genuine_root.subject
    assert _reason([forged_leaf, forged_root], bundle, fed.now) == "untrusted-root"
    # a bundle trusting only the same-named forged root refuses the genuine leaf
    assert _reason(signer.chain, TrustBundle(roots=(forged_root,)), fed.now) == "untrusted-root"
    # the same through JWS: a forged leaf with the attacker's own Ed25519 key
    attacker_key = ed25519.Ed25519PrivateKey.generate()
    attacker_leaf = _resign(genuine_leaf, forger, public_key=attacker_key.public_key())
    token = sign_compact(b"x", Signer(attacker_key, (attacker_leaf,)), typ=TYP, at=fed.now)
    with pytest.raises(InvalidSignature):
        verify_compact(token, bundle, at=fed.now, typ=TYP)


def test_crl_cached_for_the_genuine_root_is_refused_for_a_same_named_forged_root(fed) -> None:
    signer, bundle = fed.signer(), fed.bundle()
    validate_path(signer.chain, bundle, purpose=Purpose.SEAL, at=fed.now)  # CRL cached
    forger = ec.generate_private_key(ec.SECP256R1())
    forged_root = _resign(bundle.roots[0], forger, public_key=forger.public_key())
    forged_leaf = _resign(signer.chain[0], forger)
    trusting_forgery = TrustBundle(roots=(forged_root,), crls=bundle.crls)
    assert _reason([forged_leaf], trusting_forgery, fed.now) == "crl-invalid"


def test_newer_crl_forged_under_the_root_name_is_refused_after_the_genuine_one_was_cached(
    fed,
) -> None:
    signer = fed.signer()
    validate_path(signer.chain, fed.bundle(), purpose=Purpose.SEAL, at=fed.now)
    revoke(fed.directory, (fed.node_dir / "seal.pem").read_bytes(), now=fed.now)
    genuine = fed.bundle()
    assert _reason(signer.chain, genuine, fed.now) == "revoked"  # genuine new CRL cached
    forged = _forged_crl(genuine.roots[0], ec.generate_private_key(ec.SECP256R1()), fed.now)
    with_forgery = TrustBundle(roots=genuine.roots, crls=(*genuine.crls, forged))
    assert _reason(signer.chain, with_forgery, fed.now) == "crl-invalid"


def test_x5c_text_cache_still_refuses_a_non_canonical_variant(fed) -> None:
    import base64

    item = base64.b64encode(pathcache.der(fed.signer().chain[0])).decode()
    cert = pathcache.certificate_from_x5c(item)
    assert pathcache.certificate_from_x5c(item) is cert
    assert pathcache.stats()["x5c"]["hits"] == 1
    variants = [item + "\n", " " + item, item + "=="]
    raw = base64.b64decode(item)
    if len(raw) % 3:  # spare bits in the last character: set one, same bytes decoded
        body = item.rstrip("=")
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        flipped = alphabet[alphabet.index(body[-1]) | 1]
        variants.append(body[:-1] + flipped + item[len(body) :])
    for variant in variants:
        with pytest.raises(ValueError, match=r"(?i)base64|padding|digit|excess"):
            pathcache.certificate_from_x5c(variant)


def test_lru_cache_is_bounded_and_evicts_the_least_recently_used() -> None:
    cache: pathcache.LruCache[int] = pathcache.LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "b" is now the least recently used
    cache.put("c", 3)
    assert len(cache) == 2
    assert cache.get("b") is None
    assert cache.get("a") == 1
    assert cache.get("c") == 3
    with pytest.raises(ValueError, match="maxsize"):
        pathcache.LruCache(0)


def test_lru_cache_readers_without_the_lock_race_writers_that_evict_safely() -> None:
    """Readers take no lock: a key evicted by a writer between a reader's lookup and its
    move to the end must still give the right value (or a miss), never an error."""
    cache: pathcache.LruCache[int] = pathcache.LruCache(4)
    errors: list[BaseException] = []
    wrong: list[tuple[int, int]] = []
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            cache.put(i % 16, i % 16)
            i += 1

    def read() -> None:
        try:
            for i in range(200_000):
                value = cache.get(i % 16)
                if value is not None and value != i % 16:
                    wrong.append((i % 16, value))
        except BaseException as exc:
            errors.append(exc)

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        writers = [threading.Thread(target=write) for _ in range(2)]
        readers = [threading.Thread(target=read) for _ in range(3)]
        for t in writers + readers:
            t.start()
        for t in readers:
            t.join()
        stop.set()
        for t in writers:
            t.join()
    finally:
        sys.setswitchinterval(previous)
    assert errors == []
    assert wrong == []
    assert len(cache) <= 4
    assert cache.hits > 0
    assert cache.misses > 0


def test_der_memo_is_per_object_and_matches_the_encoding(fed) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    cert = fed.signer().chain[0]
    copy = x509.load_der_x509_certificate(cert.public_bytes(Encoding.DER))
    assert pathcache.der(cert) == cert.public_bytes(Encoding.DER)
    assert pathcache.der(cert) is pathcache.der(cert)
    assert pathcache.der(copy) == pathcache.der(cert)


def test_concurrent_validations_agree_with_the_uncached_answer(fed) -> None:
    signer, bundle = fed.signer(), fed.bundle()
    revoke(fed.directory, (fed.node_dir / "seal.pem").read_bytes(), now=fed.now)
    revoked_bundle = fed.bundle()
    results: list[str] = []
    lock = threading.Lock()

    def work() -> None:
        for i in range(20):
            b = bundle if i % 2 else revoked_bundle
            try:
                validate_path(signer.chain, b, purpose=Purpose.SEAL, at=fed.now)
                outcome = "ok"
            except CertificateRejected as exc:
                outcome = exc.reason
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 40
    assert results.count("revoked") == 40


def test_the_newest_crl_of_an_issuer_is_used_whatever_the_bundle_order(fed) -> None:
    signer = fed.signer()
    old_crl = fed.bundle().crls[0]
    later = fed.now + timedelta(minutes=1)
    revoke(fed.directory, (fed.node_dir / "seal.pem").read_bytes(), now=later)
    new_crl = fed.bundle().crls[0]
    assert new_crl.last_update_utc > old_crl.last_update_utc
    roots = fed.bundle().roots
    for crls in ((old_crl, new_crl), (new_crl, old_crl)):
        bundle = TrustBundle(roots=roots, crls=crls)
        assert bundle.newest_crls[roots[0].subject][0] is new_crl
        assert _reason(signer.chain, bundle, later) == "revoked"
