"""The signed federation directory: format, verification, merging, CRL freshness, CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from federation_kit import NOW, Province, add_node, bundle_bytes, make_province

from certs.pki import renew_crl
from relay.cli import main
from relay.federation.crls import fresher_bundle
from relay.federation.directories import DirectorySet, Offer, merge
from relay.federation.partners import PartnerRoute, agreement_partners, resolve_partners
from relay.federation.publish import PublishError, publish_directory
from signing.certificates import Purpose, TrustBundle, validate_path
from signing.encoding import b64url, b64url_decode
from signing.errors import CertificateRejected, InvalidSignature
from signing.federation_directory import (
    DirectoryEntry,
    EntryLimits,
    FederationDirectory,
    sign_directory,
    verify_directory,
)
from signing.keys import Signer


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Province, Province, Path]:
    base = tmp_path_factory.mktemp("dir")
    hubei, jiangsu = make_province(base, "Hubei"), make_province(base, "Jiangsu")
    for node in ("420106", "420981"):
        add_node(base, hubei, node)
    add_node(base, jiangsu, "320982")
    bundle = base / "bundle.pem"
    bundle.write_bytes(bundle_bytes([hubei, jiangsu]))
    return hubei, jiangsu, bundle


def _publish(province: Province, bundle: Path, out: Path, nodes: list[Path]) -> bytes:
    publish_directory(
        key_dir=province.key_dir,
        trust_bundle=bundle,
        federation=province.name,
        node_files=[n / "node.json" for n in nodes],
        out=out,
        now=NOW,
        valid_for=7 * 86400,
    )
    return out.read_bytes()


def _signer(province: Province) -> Signer:
    return Signer.from_pem(
        (province.key_dir / "directory.key").read_bytes(),
        (province.key_dir / "directory.pem").read_bytes(),
    )


def test_a_published_directory_verifies_with_its_entries(world, tmp_path: Path) -> None:
    hubei, _, bundle = world
    data = _publish(hubei, bundle, tmp_path / "hubei.jws", list(hubei.nodes.values()))
    verified = verify_directory(data, TrustBundle.from_pem(bundle.read_bytes()), at=NOW)
    assert verified.directory.federation == "Hubei"
    assert verified.directory.serial == 1
    assert sorted(verified.entries) == ["420106", "420981"]
    assert verified.descriptors["420106"].name_en == "Office 420106"
    assert verified.refused == {}
    assert verified.root == x509.load_pem_x509_certificate((hubei.folder / "root.pem").read_bytes())
    # publishing again replaces the file with the next serial
    again = _publish(hubei, bundle, tmp_path / "hubei.jws", list(hubei.nodes.values()))
    newer = verify_directory(again, TrustBundle.from_pem(bundle.read_bytes()), at=NOW)
    assert newer.directory.serial == 2
    assert newer.newer_than(verified)
    assert not verified.newer_than(newer)


def test_a_changed_byte_or_a_wrong_key_refuses_the_document(world, tmp_path: Path) -> None:
    hubei, _, bundle = world
    trust = TrustBundle.from_pem(bundle.read_bytes())
    token = _publish(hubei, bundle, tmp_path / "h.jws", [hubei.nodes["420106"]]).decode().strip()
    head, payload, sig = token.split(".")
    obj = json.loads(b64url_decode(payload))
    obj["nodes"][0]["federation_url"] = "https://attacker.example:8443"
    forged = ".".join([head, b64url(json.dumps(obj, separators=(",", ":")).encode()), sig])
    with pytest.raises(InvalidSignature):
        verify_directory(forged, trust, at=NOW)
    # a node's seal key is not a directory key
    node = hubei.nodes["420106"]
    seal = Signer.from_pem((node / "seal.key").read_bytes(), (node / "seal.pem").read_bytes())
    directory = FederationDirectory(
        "Hubei",
        1,
        NOW,
        NOW + timedelta(days=1),
        verify_directory(token, trust, at=NOW).directory.entries,
    )
    with pytest.raises(InvalidSignature):
        verify_directory(sign_directory(directory, seal, at=NOW), trust, at=NOW)


def test_a_directory_key_is_neither_a_seal_nor_a_tls_certificate(world) -> None:
    hubei, _, bundle = world
    trust = TrustBundle.from_pem(bundle.read_bytes())
    cert = x509.load_pem_x509_certificate((hubei.key_dir / "directory.pem").read_bytes())
    for purpose in (Purpose.SEAL, Purpose.TLS_PEER):
        with pytest.raises(CertificateRejected) as caught:
            validate_path([cert], trust, purpose=purpose, at=NOW)
        assert caught.value.reason in {"wrong-purpose", "wrong-node"}
    assert validate_path([cert], trust, purpose=Purpose.DIRECTORY, at=NOW).name == "Hubei Directory"


def test_a_province_cannot_list_another_provinces_node(world) -> None:
    hubei, jiangsu, bundle = world
    trust = TrustBundle.from_pem(bundle.read_bytes())
    limits = EntryLimits(1 << 20, 100)
    entries = [
        DirectoryEntry.from_node_json((hubei.nodes["420106"] / "node.json").read_bytes(), limits),
        DirectoryEntry.from_node_json((jiangsu.nodes["320982"] / "node.json").read_bytes(), limits),
    ]
    directory = FederationDirectory("Hubei", 1, NOW, NOW + timedelta(days=1), tuple(entries))
    verified = verify_directory(sign_directory(directory, _signer(hubei), at=NOW), trust, at=NOW)
    assert sorted(verified.entries) == ["420106"]
    assert "another federation" in verified.refused["320982"]


def test_the_publisher_refuses_a_directory_a_node_would_cut(world, tmp_path: Path) -> None:
    hubei, jiangsu, bundle = world
    out = tmp_path / "h.jws"
    with pytest.raises(PublishError, match="320982"):
        _publish(hubei, bundle, out, [hubei.nodes["420106"], jiangsu.nodes["320982"]])
    assert not out.exists()


def test_merge_keeps_the_newest_copy_per_root(world, tmp_path: Path) -> None:
    hubei, jiangsu, bundle = world
    trust = TrustBundle.from_pem(bundle.read_bytes())
    first = verify_directory(
        _publish(hubei, bundle, tmp_path / "h", [hubei.nodes["420106"]]), trust, at=NOW
    )
    second = verify_directory(
        _publish(hubei, bundle, tmp_path / "h", list(hubei.nodes.values())), trust, at=NOW
    )
    other = verify_directory(
        _publish(jiangsu, bundle, tmp_path / "j", list(jiangsu.nodes.values())), trust, at=NOW
    )
    held, outcome = merge(DirectorySet(), first)
    assert outcome is Offer.NEWER
    held, outcome = merge(held, other)
    assert outcome is Offer.NEWER
    assert len(held) == 2
    held, outcome = merge(held, second)
    assert outcome is Offer.NEWER
    assert held.node_ids() == {"420106", "420981", "320982"}
    same, outcome = merge(held, first)
    assert outcome is Offer.OLDER
    assert same is held
    assert merge(held, second)[1] is Offer.SAME


def test_partners_are_the_live_agreement_parties_found_in_directories(
    world, tmp_path: Path
) -> None:
    from federation_kit import agreement_file

    from agreements.signed import SignedAgreement

    hubei, jiangsu, bundle = world
    trust = TrustBundle.from_pem(bundle.read_bytes())
    signers = {
        "420106": hubei.nodes["420106"],
        "320982": jiangsu.nodes["320982"],
        "420981": hubei.nodes["420981"],
    }
    path = agreement_file(tmp_path / "a.json", signers)
    lifecycle = SignedAgreement.from_bytes(path.read_bytes()).evaluate(trust, at=NOW).lifecycle
    assert agreement_partners("420106", [lifecycle], at=NOW) == {"320982", "420981"}
    assert agreement_partners("371422", [lifecycle], at=NOW) == frozenset()
    held, _ = merge(
        DirectorySet(),
        verify_directory(
            _publish(hubei, bundle, tmp_path / "h", list(hubei.nodes.values())), trust, at=NOW
        ),
    )
    override = PartnerRoute("320982", "https://127.0.0.1:9", b"{}", "override")
    resolution = resolve_partners({"320982", "420981"}, held, {"320982": override})
    assert resolution.routes["320982"] is override
    assert resolution.routes["420981"].source == "directory Hubei"
    assert resolution.routes["420981"].limits == EntryLimits(1024 * 1024, 100)
    assert resolution.unresolved == frozenset()
    assert resolve_partners({"320982"}, held, {}).unresolved == {"320982"}


def test_a_fresher_crl_of_a_bundle_root_replaces_the_old_one(world, tmp_path: Path) -> None:
    hubei, _jiangsu, bundle = world
    trust = TrustBundle.from_pem(bundle.read_bytes())
    later = NOW + timedelta(days=1)
    import shutil

    copy = tmp_path / "fed-copy"
    shutil.copytree(hubei.folder, copy)
    fresh = renew_crl(copy, now=later)
    assert fresher_bundle(trust, [], at=later) is None
    updated = fresher_bundle(trust, [fresh], at=later)
    assert updated is not None
    assert updated.roots == trust.roots
    assert fresh in updated.crls
    assert len(updated.crls) == 2
    # an older copy, a CRL from the future or one of an unknown root changes nothing
    old = x509.load_pem_x509_crl((hubei.folder / "crl.pem").read_bytes())
    assert fresher_bundle(updated, [old], at=later) is None
    assert fresher_bundle(trust, [fresh], at=NOW) is None  # issued a day after NOW
    stranger = make_province(tmp_path, "Elsewhere")
    foreign = renew_crl(stranger.folder, now=later)
    assert fresher_bundle(trust, [foreign], at=later) is None


def test_pki_cli_makes_a_directory_key_and_signs_the_directory(
    world, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hubei, _, bundle = world
    key_dir, out = tmp_path / "key", tmp_path / "hubei.directory.jws"
    assert (
        main(["pki", "directory-key", "--federation", str(hubei.folder), "--out", str(key_dir)])
        == 0
    )
    argv = ["pki", "sign-directory", "--key-dir", str(key_dir), "--trust", str(bundle)]
    argv += ["--federation-name", "Hubei", "--out", str(out), "--valid-for", "2d"]
    for node in hubei.nodes.values():
        argv += ["--node", str(node / "node.json")]
    assert main(argv) == 0
    assert "serial 1 with 2 node(s)" in capsys.readouterr().out
    now = datetime.now(UTC)  # the command signed at the wall clock's now
    verified = verify_directory(out.read_bytes(), TrustBundle.from_pem(bundle.read_bytes()), at=now)
    assert verified.directory.expires_at - verified.directory.issued_at == timedelta(days=2)
    assert main([*argv, "--node", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    assert (
        verify_directory(out.read_bytes(), TrustBundle.from_pem(bundle.read_bytes()), at=now)
        == verified
    )


def test_pki_crl_reissues_and_renew_crl_stays_an_alias(world, tmp_path: Path) -> None:
    import shutil

    hubei, _, _ = world
    copy = tmp_path / "fed"
    shutil.copytree(hubei.folder, copy)
    before = x509.load_pem_x509_crl((copy / "crl.pem").read_bytes())
    assert main(["pki", "crl", "--federation", str(copy)]) == 0
    after = x509.load_pem_x509_crl((copy / "crl.pem").read_bytes())
    assert after.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == (
        before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
    )
    assert main(["pki", "renew-crl", "--federation", str(copy)]) == 0


def test_a_directory_signed_by_a_revoked_directory_key_is_refused(world, tmp_path: Path) -> None:
    import shutil

    from certs.pki import revoke

    hubei, _, bundle = world
    data = _publish(hubei, bundle, tmp_path / "h.jws", [hubei.nodes["420106"]])
    copy = tmp_path / "fed"
    shutil.copytree(hubei.folder, copy)
    later = NOW + timedelta(minutes=1)
    crl = revoke(copy, (hubei.key_dir / "directory.pem").read_bytes(), now=later)
    held = TrustBundle.from_pem(bundle.read_bytes())
    revoked = TrustBundle(held.roots, (*held.crls, crl))  # the newest CRL of Hubei wins
    assert verify_directory(data, held, at=later).entries
    with pytest.raises(InvalidSignature):
        verify_directory(data, revoked, at=later)
