"""validate_path: every CertificateRejected reason is reachable, and good paths pass."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from pki_certmaker import TLS_EKUS, make_cert

from signing.certificates import Purpose, TrustBundle, is_node_id, validate_path
from signing.errors import CertificateRejected, MalformedInput
from signing.keys import load_pem_chain


def _chain(directory, leaf="seal.pem"):
    return load_pem_chain((directory / leaf).read_bytes())


def _reason(chain, bundle, **kw) -> str:
    kw.setdefault("purpose", Purpose.SEAL)
    with pytest.raises(CertificateRejected) as info:
        validate_path(chain, bundle, **kw)
    return info.value.reason


@pytest.fixture
def bundle(hubei) -> TrustBundle:
    return TrustBundle.from_pem(hubei.bundle_pem())


def test_good_seal_and_tls_paths_give_the_node_identity(hubei, bundle, now) -> None:
    node = hubei.nodes["420106"]
    ident = validate_path(_chain(node), bundle, purpose=Purpose.SEAL, at=now, node_id="420106")
    assert (ident.node_id, ident.name, ident.purpose) == ("420106", "武昌区政务服务中心", "seal")
    tls = validate_path(_chain(node, "tls.pem"), bundle, purpose=Purpose.TLS_PEER, at=now)
    assert tls.node_id == "420106"


def test_chain_that_includes_the_root_copy_is_accepted(hubei, bundle, now) -> None:
    chain = _chain(hubei.nodes["420106"]) + bundle.roots
    assert validate_path(chain, bundle, purpose=Purpose.SEAL, at=now).node_id == "420106"


def test_untrusted_root_when_the_issuer_is_not_in_the_bundle(jiangsu, bundle, now) -> None:
    assert _reason(_chain(jiangsu.nodes["320982"]), bundle, at=now) == "untrusted-root"


def test_same_named_forged_root_is_untrusted(hubei, bundle, now) -> None:
    real_root = bundle.roots[0]
    fake_key = ec.generate_private_key(ec.SECP256R1())
    fake_root = (
        x509.CertificateBuilder()
        .subject_name(real_root.subject)
        .issuer_name(real_root.subject)
        .public_key(fake_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(fake_key, hashes.SHA256())
    )
    leaf = make_cert(
        "420106",
        issuer=fake_root,
        issuer_key=fake_key,
        key=ed25519.Ed25519PrivateKey.generate(),
        now=now,
    )
    assert _reason([leaf], bundle, at=now) == "untrusted-root"


def test_bad_chain_when_links_do_not_verify(hubei, jiangsu, bundle, now) -> None:
    chain = _chain(hubei.nodes["420106"]) + _chain(jiangsu.nodes["320982"])
    assert _reason(chain, bundle, at=now) == "bad-chain"
    assert _reason([], bundle, at=now) == "bad-chain"


def test_intermediate_ca_path_validates_and_non_ca_intermediate_is_bad_chain(now) -> None:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = make_cert("Test Root", issuer=None, issuer_key=None, key=root_key, now=now, ca=True)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = make_cert(
        "Inter", issuer=root, issuer_key=root_key, key=inter_key, now=now, ca=True, path_length=0
    )
    leaf = make_cert(
        "371422",
        issuer=inter,
        issuer_key=inter_key,
        key=ed25519.Ed25519PrivateKey.generate(),
        now=now,
    )
    bundle = TrustBundle(roots=(root,))
    assert validate_path([leaf, inter], bundle, purpose=Purpose.SEAL, at=now).node_id == "371422"
    # the same shape with an intermediate that is not a CA
    fake_inter = make_cert("Inter", issuer=root, issuer_key=root_key, key=inter_key, now=now)
    leaf2 = make_cert(
        "371422",
        issuer=fake_inter,
        issuer_key=inter_key,
        key=ed25519.Ed25519PrivateKey.generate(),
        now=now,
    )
    assert _reason([leaf2, fake_inter], bundle, at=now) == "bad-chain"


def test_path_length_constraint_of_the_dev_root_forbids_intermediates(hubei, bundle, now) -> None:
    # the dev root has pathLenConstraint=0; a CA under it may not issue leaves.
    fed = hubei.directory
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    root_key = load_pem_private_key((fed / "root.key").read_bytes(), None)
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter = make_cert(
        "Inter", issuer=bundle.roots[0], issuer_key=root_key, key=inter_key, now=now, ca=True
    )
    leaf = make_cert(
        "420106",
        issuer=inter,
        issuer_key=inter_key,
        key=ed25519.Ed25519PrivateKey.generate(),
        now=now,
    )
    assert _reason([leaf, inter], bundle, at=now) == "bad-chain"


def test_expired_and_not_yet_valid(hubei, bundle, now) -> None:
    chain = _chain(hubei.nodes["420106"])
    assert _reason(chain, bundle, at=now + timedelta(days=731)) == "expired"
    assert _reason(chain, bundle, at=now - timedelta(minutes=6)) == "not-yet-valid"
    # the 5-minute backdating: a clock slightly behind still accepts a fresh certificate
    validate_path(chain, bundle, purpose=Purpose.SEAL, at=now - timedelta(minutes=4))


def test_wrong_purpose_both_ways(hubei, bundle, now) -> None:
    node = hubei.nodes["420106"]
    assert _reason(_chain(node, "tls.pem"), bundle, at=now) == "wrong-purpose"
    assert _reason(_chain(node), bundle, at=now, purpose=Purpose.TLS_PEER) == "wrong-purpose"


def test_wrong_purpose_for_ca_leaf_tls_eku_on_seal_and_missing_usage(now) -> None:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = make_cert("Test Root", issuer=None, issuer_key=None, key=root_key, now=now, ca=True)
    bundle = TrustBundle(roots=(root,))
    ed = ed25519.Ed25519PrivateKey.generate()
    ca_leaf = make_cert("420106", issuer=root, issuer_key=root_key, key=ed, now=now, ca=True)
    seal_with_tls = make_cert(
        "420106", issuer=root, issuer_key=root_key, key=ed, now=now, ekus=TLS_EKUS
    )
    no_commitment = make_cert(
        "420106", issuer=root, issuer_key=root_key, key=ed, now=now, seal=False
    )
    for cert in (ca_leaf, seal_with_tls, no_commitment):
        assert _reason([cert], bundle, at=now) == "wrong-purpose"
    tls_no_eku = make_cert("420106", issuer=root, issuer_key=root_key, key=ed, now=now, seal=False)
    assert _reason([tls_no_eku], bundle, at=now, purpose=Purpose.TLS_PEER) == "wrong-purpose"


def test_wrong_node_for_other_id_and_for_cn_that_is_not_a_node_id(hubei, bundle, now) -> None:
    chain = _chain(hubei.nodes["420106"])
    assert _reason(chain, bundle, at=now, node_id="420981") == "wrong-node"
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = make_cert("Test Root", issuer=None, issuer_key=None, key=root_key, now=now, ca=True)
    for cn in ("not-a-node", "000000", "4201066"):
        leaf = make_cert(
            cn, issuer=root, issuer_key=root_key, key=ed25519.Ed25519PrivateKey.generate(), now=now
        )
        assert _reason([leaf], TrustBundle(roots=(root,)), at=now) == "wrong-node"


def test_crl_invalid_when_stale_or_signed_by_another_key(hubei, bundle, now) -> None:
    chain = _chain(hubei.nodes["420106"])
    assert _reason(chain, bundle, at=now + timedelta(days=31)) == "crl-invalid"
    other_key = ec.generate_private_key(ec.SECP256R1())
    forged = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(bundle.roots[0].subject)
        .last_update(now + timedelta(seconds=1))  # newer than the real one, so it is chosen
        .next_update(now + timedelta(days=30))
        .sign(other_key, hashes.SHA256())
    )
    forged_bundle = TrustBundle(roots=bundle.roots, crls=(*bundle.crls, forged))
    assert _reason(chain, forged_bundle, at=now) == "crl-invalid"


def test_bundle_without_crl_has_no_revocation_information(hubei, now) -> None:
    bundle = TrustBundle.from_pem((hubei.directory / "root.pem").read_bytes())
    assert bundle.crls == ()
    chain = _chain(hubei.nodes["420106"])
    # stale-CRL time is fine when there is no CRL to be stale
    validate_path(chain, bundle, purpose=Purpose.SEAL, at=now + timedelta(days=31))


def test_bundle_parsing_refuses_foreign_blocks_and_empty_input(hubei) -> None:
    key_block = (hubei.directory / "root.key").read_bytes()
    with pytest.raises(MalformedInput):
        TrustBundle.from_pem(hubei.bundle_pem() + key_block)
    with pytest.raises(MalformedInput):
        TrustBundle.from_pem(b"")
    assert TrustBundle.from_pem(TrustBundle.from_pem(hubei.bundle_pem()).to_pem()).roots


def test_validate_path_requires_an_aware_time(hubei, bundle, now) -> None:
    with pytest.raises(ValueError, match="timezone"):
        validate_path(
            _chain(hubei.nodes["420106"]), bundle, purpose=Purpose.SEAL, at=now.replace(tzinfo=None)
        )


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("420106", True),
        ("000000", False),
        ("42010", False),
        ("4201061", False),
        ("42010a", False),
        ("４２０１０６", False),
        (" 420106", False),
        ("420106\n", False),
    ],
)
def test_is_node_id(text: str, ok: bool) -> None:
    assert is_node_id(text) is ok
