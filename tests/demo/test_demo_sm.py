"""`tongban demo --sm-province`: a province in the SM profile. The PKI, signing-core and
agreement steps run here (no nodes, a few seconds); the whole run with nodes is
``tongban demo --once --sm-province jiangsu``."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from agreements.signed import SignedAgreement
from relay.cli import main
from relay.demo.report import Reporter
from relay.demo.runner import SCENARIO, run_demo
from signing.certificates import TrustBundle
from signing.nodedir import load_node_keys
from signing.sm_x509 import sm2_public_key


async def test_pki_and_signing_steps_with_jiangsu_in_the_sm_profile(tmp_path: Path) -> None:
    stream = io.StringIO()
    ok = await run_demo(
        tmp_path / "d",
        Reporter(stream),
        once=True,
        steps=SCENARIO[:3],
        sm_federations=frozenset({"Jiangsu"}),
    )
    text = stream.getvalue()
    assert ok, text
    assert "✗" not in text
    assert "江苏采用国密配置 SM profile" in text
    assert "4 roots + 4 CRLs" in text  # Jiangsu: its SM2 root and its transport root
    assert "320982 大丰区" in text
    assert "lists sealing keys sm2" in text
    assert "seals it to 320982 with sm2-sm4gcm" in text
    assert "320982 opens it: the same bytes as the original" in text
    pki = tmp_path / "d" / "pki"
    assert load_node_keys(pki / "nodes" / "320982").seal.algorithm == "SM2SM3"
    assert load_node_keys(pki / "nodes" / "420106").seal.algorithm == "EdDSA"
    roots = TrustBundle.from_pem((pki / "trust-bundle.pem").read_bytes()).roots
    assert sum(sm2_public_key(r) is not None for r in roots) == 1
    # the agreement names both profiles, so Wuchang (default) and Dafeng (SM) may exchange
    signed = SignedAgreement.from_bytes(
        (tmp_path / "d" / "agreement" / "agreement.signed.json").read_bytes()
    )
    assert signed.agreement.crypto_profiles == {"default", "sm"}
    assert "cryptographic profiles: default, sm" in text
    assert "permit 420106→320982 food-business-licence submit (proxy_receipt) [default → sm]" in (
        text
    )


async def test_without_an_sm_province_the_agreement_names_no_profiles(tmp_path: Path) -> None:
    stream = io.StringIO()
    ok = await run_demo(tmp_path / "d", Reporter(stream), once=True, steps=SCENARIO[:3])
    text = stream.getvalue()
    assert ok, text
    signed = SignedAgreement.from_bytes(
        (tmp_path / "d" / "agreement" / "agreement.signed.json").read_bytes()
    )
    assert signed.agreement.crypto_profiles is None
    assert "cryptographic profiles: any (not named)" in text
    assert "[default → default]" in text


def test_an_unknown_province_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["demo", "--once", "--sm-province", "guangxi"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
