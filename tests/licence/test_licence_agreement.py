"""``tongban licence verify --agreement``: entitlement from a signed agreement file."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from licence_support import ISSUER, OTHER, PESTICIDE, T0, Federation, make_licence

from agreements.model import (
    Agreement,
    Material,
    MaterialCopy,
    MaterialForm,
    MatterClause,
    Party,
    Roles,
    ServiceMode,
)
from agreements.signatures import sign_agreement
from agreements.signed import SignedAgreement
from relay.cli import main
from signing.licence import issue_licence

AT = T0 + timedelta(days=2)


def _agreement() -> Agreement:
    clause = MatterClause(
        matter=PESTICIDE,
        modes=frozenset({ServiceMode.PROXY_RECEIPT}),
        roles=Roles.build(
            receive_for={OTHER: frozenset({ISSUER})},
            handle=frozenset({ISSUER}),
            survey_for={},
            issue=frozenset({ISSUER}),
        ),
        materials=(
            Material(
                "申请书",
                "Application form",
                MaterialForm.PAPER_OR_ELECTRONIC,
                MaterialCopy.ORIGINAL,
            ),
        ),
        time_limit_working_days=20,
        survey_required=False,
        survey_checklist=(),
    )
    return Agreement(
        id="js-hb-pesticide",
        version=1,
        title_zh="农药经营许可跨省通办协议",
        title_en="Cross-province pesticide licensing agreement",
        parties=(
            Party(ISSUER, "盐城市大丰区行政审批局", "Dafeng Approval Bureau", "江苏省"),
            Party(OTHER, "武汉市武昌区政务服务中心", "Wuchang Service Centre", "湖北省"),
        ),
        valid_from=T0 - timedelta(days=1),
        valid_until=T0 + timedelta(days=1000),
        clauses={PESTICIDE: clause},
        data_categories=frozenset({"case-materials"}),
        retention_years=30,
    )


@pytest.fixture(scope="module")
def files(fed: Federation, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("agreement")
    ag = _agreement()
    signed = SignedAgreement(ag)
    for node in (ISSUER, OTHER):
        sig = sign_agreement(ag, fed.signer(node), at=T0 + timedelta(minutes=30))
        signed = signed.with_signature(sig)
    (d / "agreement.json").write_bytes(signed.to_bytes())
    (d / "bundle.pem").write_bytes(fed.bundle_pem)
    good = make_licence(status=())
    (d / "good.jwt").write_text(issue_licence(good, fed.signer(ISSUER), at=T0 + timedelta(hours=1)))
    bad = make_licence(issuer_node=OTHER, status=())
    (d / "bad.jwt").write_text(issue_licence(bad, fed.signer(OTHER), at=T0 + timedelta(hours=1)))
    return d


def _verify(d: Path, name: str) -> int:
    return main([
        "licence", "verify", str(d / name), "--trust", str(d / "bundle.pem"),
        "--agreement", str(d / "agreement.json"), "--at", AT.isoformat(),
    ])  # fmt: skip


def test_agreement_entitles_the_issuing_office(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _verify(files, "good.jwt") == 0
    assert "entitlement  passed" in capsys.readouterr().out


def test_agreement_does_not_entitle_the_receiving_office(
    files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _verify(files, "bad.jwt") == 1
    captured = capsys.readouterr()
    assert "error[issuer-not-entitled]" in captured.err
    assert "entitlement  failed [issuer-not-entitled]" in captured.out


def test_unsigned_agreement_entitles_nobody(
    fed: Federation, files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "agreement.json").write_bytes(SignedAgreement(_agreement()).to_bytes())
    for name in ("bundle.pem", "good.jwt"):
        (tmp_path / name).write_bytes((files / name).read_bytes())
    assert _verify(tmp_path, "good.jwt") == 1
    assert "error[issuer-not-entitled]" in capsys.readouterr().err


def test_unreadable_agreement_is_a_usage_error(
    files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "agreement.json").write_text("{}")
    for name in ("bundle.pem", "good.jwt"):
        (tmp_path / name).write_bytes((files / name).read_bytes())
    assert _verify(tmp_path, "good.jwt") == 2
    assert "error[agreement]" in capsys.readouterr().err


def test_a_compact_licence_of_an_office_not_entitled_is_refused(
    fed: Federation, files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The compact form (its verify URL), issuer resolved from the office's node.json."""
    from relay.cli.licence import _own_issuer
    from signing.licence_compact import issue_compact_licence, licence_url

    issuer = _own_issuer(fed.nodes[OTHER])
    bad = make_licence(issuer_node=OTHER, status=())
    url = licence_url(issuer.public_base, issue_compact_licence(bad, fed.signer(OTHER), issuer))
    (files / "bad.url").write_text(url + "\n")
    assert main([
        "licence", "verify", str(files / "bad.url"), "--trust", str(files / "bundle.pem"),
        "--agreement", str(files / "agreement.json"), "--at", AT.isoformat(),
        "--issuer", str(fed.nodes[OTHER] / "node.json"),
    ]) == 1  # fmt: skip
    captured = capsys.readouterr()
    assert "error[issuer-not-entitled]" in captured.err
    assert "entitlement  failed [issuer-not-entitled]" in captured.out
