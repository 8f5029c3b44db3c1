"""node.json: issued by the PKI tool, verified, refused when anything does not bind."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from certs.pki import revoke
from signing.certificates import TrustBundle
from signing.descriptor import NODE_TYP, NodeDescriptor, sign_descriptor, verify_descriptor
from signing.encoding import canonical_json
from signing.errors import CertificateRejected, InvalidSignature, MalformedInput
from signing.hpke import HpkeSuite, generate_hpke_key, hpke_open, hpke_seal
from signing.jws import sign_compact
from signing.keys import load_pem_chain
from signing.nodedir import load_node_keys


def test_issued_node_json_verifies_and_names_the_node(fed) -> None:
    desc = verify_descriptor((fed.a / "node.json").read_bytes(), fed.bundle(), at=fed.now)
    assert desc.node_id == "420106"
    assert desc.name_zh == "武昌区政务服务中心"
    assert desc.name_en == "Wuchang District Government Service Centre"
    assert dict(desc.endpoints) == {
        "federation": "https://wuchang.example:9443",
        "public": "https://wuchang.example",
    }
    assert desc.tls_chain == load_pem_chain((fed.a / "tls.pem").read_bytes())
    assert desc.seal_chain == load_pem_chain((fed.a / "seal.pem").read_bytes())
    assert [k.suite for k in desc.hpke_keys] == [HpkeSuite.X25519, HpkeSuite.MLKEM768_X25519]
    assert desc.issued_at == fed.now


def test_defaults_when_no_endpoints_or_english_name(fed) -> None:
    desc = verify_descriptor((fed.b / "node.json").read_bytes(), fed.bundle(), at=fed.now)
    assert desc.name_en == desc.name_zh == "应城市政务服务中心"
    assert desc.endpoints["federation"] == "https://10.0.0.7:8443"


def test_node_json_shape_is_a_descriptor_member_holding_the_jws(fed) -> None:
    outer = json.loads((fed.a / "node.json").read_bytes())
    assert list(outer) == ["descriptor"]
    assert outer["descriptor"].count(".") == 2
    assert (fed.a / "node.json").read_bytes() == canonical_json(outer) + b"\n"


def test_load_node_keys_matches_the_published_descriptor(fed) -> None:
    keys = load_node_keys(fed.a)
    desc = verify_descriptor(keys.descriptor_bytes, fed.bundle(), at=fed.now)
    assert keys.seal.chain == desc.seal_chain
    assert keys.tls_cert_path.name == "tls.pem"
    published = {k.kid for k in desc.hpke_keys}
    assert {k.public_key().kid for k in keys.hpke_keys} == published
    # a partner seals to the published key; the node opens with its own directory
    for public in desc.hpke_keys:
        sealed = hpke_seal(b"case file key", public, info=b"test")
        opened = [k for k in keys.hpke_keys if k.public_key().kid == public.kid]
        assert hpke_open(sealed, opened[0], info=b"test") == b"case file key"


def test_load_node_keys_names_the_missing_file(fed, tmp_path) -> None:
    for name in ("seal.key", "seal.pem", "tls.pem", "node.json"):
        partial = tmp_path / name.replace(".", "_")
        partial.mkdir()
        for f in fed.a.iterdir():
            if f.name != name:
                (partial / f.name).write_bytes(f.read_bytes())
        with pytest.raises(MalformedInput, match=name):
            load_node_keys(partial)


def _descriptor(fed, directory, **changes) -> NodeDescriptor:
    base = verify_descriptor((directory / "node.json").read_bytes(), fed.bundle(), at=fed.now)
    fields = {f: getattr(base, f) for f in NodeDescriptor.__dataclass_fields__}
    fields.update(changes)
    return NodeDescriptor(**fields)


def test_rotation_lists_several_hpke_keys_in_order(fed) -> None:
    keys = load_node_keys(fed.a)
    new = generate_hpke_key(HpkeSuite.X25519).public_key()
    desc = _descriptor(fed, fed.a, hpke_keys=(new, *(k.public_key() for k in keys.hpke_keys)))
    data = sign_descriptor(desc, keys.seal, at=fed.now)
    back = verify_descriptor(data, fed.bundle(), at=fed.now)
    assert back.hpke_keys == desc.hpke_keys
    assert back.keys_for(HpkeSuite.X25519)[0] == new
    assert back.hpke_key(new.kid) == new
    with pytest.raises(MalformedInput, match="twice"):
        _descriptor(fed, fed.a, hpke_keys=(new, new))


def test_descriptor_signed_by_another_node_is_refused(fed) -> None:
    keys_b = load_node_keys(fed.b)
    # A's identity, B's seal chain and key: the signer is not the node described
    desc = _descriptor(fed, fed.a, seal_chain=keys_b.seal.chain)
    with pytest.raises(InvalidSignature):
        verify_descriptor(sign_descriptor(desc, keys_b.seal, at=fed.now), fed.bundle(), at=fed.now)
    # and sign_descriptor refuses a signer whose chain is not the seal chain
    with pytest.raises(ValueError, match="seal chain"):
        sign_descriptor(_descriptor(fed, fed.a), keys_b.seal, at=fed.now)


def test_x5c_that_is_not_the_seal_chain_is_refused(fed) -> None:
    keys_a = load_node_keys(fed.a)
    keys_b = load_node_keys(fed.b)
    desc = _descriptor(fed, fed.a, seal_chain=keys_b.seal.chain)
    token = sign_compact(canonical_json(desc.to_json()), keys_a.seal, typ=NODE_TYP, at=fed.now)
    with pytest.raises(InvalidSignature):
        verify_descriptor(canonical_json({"descriptor": token}), fed.bundle(), at=fed.now)


def test_tls_chain_of_another_node_or_a_seal_cert_is_rejected(fed) -> None:
    keys_a = load_node_keys(fed.a)
    other_tls = load_pem_chain((fed.b / "tls.pem").read_bytes())
    for chain, reason in ((other_tls, "wrong-node"), (keys_a.seal.chain, "wrong-purpose")):
        data = sign_descriptor(_descriptor(fed, fed.a, tls_chain=chain), keys_a.seal, at=fed.now)
        with pytest.raises(CertificateRejected) as info:
            verify_descriptor(data, fed.bundle(), at=fed.now)
        assert info.value.reason == reason


def test_revoked_tls_certificate_is_rejected_and_expiry_refused(fed, tmp_path) -> None:
    import shutil

    fed_copy = tmp_path / "fed"
    shutil.copytree(fed.directory, fed_copy)
    revoke(fed_copy, (fed.a / "tls.pem").read_bytes(), now=fed.now)
    bundle = TrustBundle.from_pem(
        (fed_copy / "root.pem").read_bytes() + (fed_copy / "crl.pem").read_bytes()
    )
    data = (fed.a / "node.json").read_bytes()
    with pytest.raises(CertificateRejected) as info:
        verify_descriptor(data, bundle, at=fed.now)
    assert info.value.reason == "revoked"
    with pytest.raises(InvalidSignature):
        verify_descriptor(data, fed.bundle(), at=fed.now + timedelta(days=800))


def test_tampered_or_malformed_node_json_is_refused(fed) -> None:
    data = (fed.a / "node.json").read_bytes()
    token = json.loads(data)["descriptor"]
    head, body, sig = token.split(".")
    body2 = body[:10] + ("A" if body[10] != "A" else "B") + body[11:]
    for bad in (
        b"",
        b"[]",
        b'{"descriptor": 1}',
        canonical_json({"descriptor": token, "extra": 1}),
        canonical_json({"descriptor": f"{head}.{body2}.{sig}"}),
        canonical_json({"descriptor": token + "A"}),
        b"\xff",
    ):
        with pytest.raises(InvalidSignature):
            verify_descriptor(bad, fed.bundle(), at=fed.now)


def test_non_canonical_or_incomplete_payload_is_refused_even_if_signed(fed) -> None:
    keys_a = load_node_keys(fed.a)
    obj = _descriptor(fed, fed.a).to_json()
    spaced = json.dumps(obj).encode()
    missing = canonical_json({k: v for k, v in obj.items() if k != "issued_at"})
    future = canonical_json({**obj, "issued_at": int((fed.now + timedelta(hours=1)).timestamp())})
    for payload in (spaced, missing, future):
        token = sign_compact(payload, keys_a.seal, typ=NODE_TYP, at=fed.now)
        with pytest.raises(InvalidSignature):
            verify_descriptor(canonical_json({"descriptor": token}), fed.bundle(), at=fed.now)
    token = sign_compact(canonical_json(obj), keys_a.seal, typ="other+jws", at=fed.now)
    with pytest.raises(InvalidSignature):
        verify_descriptor(canonical_json({"descriptor": token}), fed.bundle(), at=fed.now)


def test_descriptor_objects_refuse_bad_fields(fed) -> None:
    with pytest.raises(MalformedInput):
        _descriptor(fed, fed.a, node_id="42010")
    with pytest.raises(MalformedInput):
        _descriptor(fed, fed.a, endpoints={"public": "https://x"})
    with pytest.raises(MalformedInput):
        _descriptor(fed, fed.a, hpke_keys=())
    with pytest.raises(MalformedInput):
        _descriptor(fed, fed.a, issued_at=fed.now.replace(tzinfo=None))
    desc = _descriptor(fed, fed.a)
    with pytest.raises(TypeError):
        desc.endpoints["public"] = "https://evil"  # type: ignore[index]
