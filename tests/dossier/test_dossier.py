"""Case dossiers of a finished demo case, exported from both offices and verified offline.

One module-wide run: ``tongban demo --once`` finishes a case between 420106 and 320982;
both nodes are started again in-process to sign and cosign each other's checkpoints,
then each exports the case with ``tongban dossier export`` while a real ``openssl ts``
TSA stamps the checkpoints. Tests verify copies of those two files. The delegated-survey
case (a real recorded remote survey by 371422 for 320982) is exported the same way from
both of its offices, with ``--with-media`` (and once from 320982 without).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import resource
import signal
import sqlite3
import struct
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from tsakit import OpenSslTsa, TsaPki, make_tsa_pki, openssl_ts_verify

from relay.config import NodeConfig, load_config
from relay.dossier.layout import DossierError, pack, unpack
from relay.dossier.report import render_html
from relay.dossier.verify import Report, Revocation, verify_dossier
from relay.http.audit_node import AuditNode
from relay.node import Node
from relay.staff_auth import StaffRole, issue_token, load_or_create_token_key
from relay.timestamps.tokens import TsaTrust
from relay.tls import client_context
from signing.certificates import TrustBundle
from signing.keys import Signer
from signing.nodedir import load_node_keys

TONGBAN = [sys.executable, "-m", "relay.cli"]
A, B, C = "420106", "320982", "371422"


@dataclass(frozen=True)
class Exported:
    demo: Path
    case: str
    dossiers: dict[str, bytes]
    tsa: TsaPki
    survey_case: str

    @property
    def trust(self) -> TrustBundle:
        return TrustBundle.from_pem((self.demo / "pki" / "trust-bundle.pem").read_bytes())

    @property
    def tsa_trust(self) -> TsaTrust:
        return TsaTrust.from_pem(self.tsa.ca.read_bytes())

    def verify(
        self, data: bytes, *, at: datetime | None = None, trust: TrustBundle | None = None
    ) -> Report:
        return verify_dossier(
            data, trust or self.trust, at=at or datetime.now(UTC), tsa_trust=self.tsa_trust
        )


async def _download(node: Node, config: NodeConfig, case: str) -> tuple[int, str, bytes]:
    """``GET /staff/v1/cases/{case}/dossier`` with a reader's token."""
    key = load_or_create_token_key(config.staff.token_key)
    now = datetime.now(UTC)
    token = issue_token(
        key, node_id=config.node_id, subject="t", roles=[StaffRole.READER], now=now, ttl=600
    )
    trust = TrustBundle.from_pem(config.trust_bundle.read_bytes())
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session,
        session.get(
            f"{node.urls['staff']}/staff/v1/cases/{case}/dossier", ssl=client_context(trust)
        ) as resp,
    ):
        return resp.status, resp.content_type, await resp.read()


async def _cosign(demo: Path) -> bytes:
    """Start both offices again, sign checkpoints and witness each other once; return
    320982's dossier downloaded from its staff API while it runs."""
    audits, nodes = {}, {}
    try:
        for node_id in (A, B):
            config = load_config(demo / "nodes" / node_id / "node.toml")
            audits[node_id] = AuditNode(config)
            nodes[node_id] = Node(
                config, extensions=[audits[node_id].extension], shutdown_timeout=5
            )
            await nodes[node_id].start()
        for node_id in (A, B):
            audits[node_id].checkpoint()
        for node_id, other in ((A, B), (B, A)):
            result = await audits[node_id].service.witness(other, audits[node_id].peers[other])
            assert result.outcome.value == "cosigned", result
        config = load_config(demo / "nodes" / B / "node.toml")
        status, media, _ = await _download(nodes[B], config, "NO-SUCH-CASE")
        assert status == 404
        status, media, data = await _download(nodes[B], config, _case_id(demo))
        assert status == 200
        assert media == "application/vnd.tongban.dossier+zip"
        return data
    finally:
        for node in nodes.values():
            await node.stop()


async def _export(demo: Path, tsa_pki: TsaPki, out: Path) -> dict[str, bytes]:
    tsa = OpenSslTsa(tsa_pki)
    url = await tsa.start()
    try:
        for node_id in (A, B, C):
            with (demo / "nodes" / node_id / "node.toml").open("a", encoding="utf-8") as f:
                f.write(f'\n[timestamps]\nurl = "{url}"\ntrust = "{tsa_pki.ca}"\n')
        downloaded = await _cosign(demo)
        case, survey = _case_id(demo), _survey_case_id(demo)
        dossiers = {"downloaded": downloaded}
        exports = [
            (A, A, case, ()),
            (B, B, case, ()),
            (f"survey-{C}", C, survey, ("--with-media",)),
            (f"survey-{B}", B, survey, ("--with-media",)),
            ("survey-no-media", B, survey, ()),
        ]
        for name, node_id, case_id, flags in exports:
            target = out / f"{name}.zip"
            proc = await asyncio.create_subprocess_exec(
                *TONGBAN,
                "dossier",
                "export",
                case_id,
                "--config",
                str(demo / "nodes" / node_id / "node.toml"),
                "--out",
                str(target),
                *flags,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == 0, stdout + stderr
            dossiers[name] = target.read_bytes()
        assert tsa.answered >= 2
        return dossiers
    finally:
        await tsa.stop()


def _case_id(demo: Path) -> str:
    db = demo / "nodes" / A / "data" / "relay.sqlite3"
    conn = sqlite3.connect(db)
    try:
        (case,) = conn.execute(
            "SELECT case_id FROM cases WHERE state = 'concluded' ORDER BY opened_at LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    return str(case)


def _survey_case_id(demo: Path) -> str:
    """The delegated-survey case: surveyed by 371422 for 320982."""
    conn = sqlite3.connect(demo / "nodes" / C / "data" / "relay.sqlite3")
    try:
        (case,) = conn.execute(
            "SELECT case_id FROM cases WHERE json_extract(header, '$.handling') = ?"
            " AND json_extract(header, '$.receiving') = ?",
            (B, C),
        ).fetchone()
    finally:
        conn.close()
    return str(case)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    base = tmp_path_factory.mktemp("dossier")
    demo = base / "demo"
    result = subprocess.run(
        [*TONGBAN, "demo", "--once", "--dir", str(demo)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tsa_pki = make_tsa_pki(base / "tsa")
    dossiers = asyncio.run(_export(demo, tsa_pki, base))
    return Exported(demo, _case_id(demo), dossiers, tsa_pki, _survey_case_id(demo))


def _failed(report: Report) -> list[tuple[str, str]]:
    return [(line.subject, line.problem) for line in report.lines if not line.ok]


@pytest.mark.parametrize("office", [A, B, "downloaded"])
def test_both_offices_dossiers_verify_today_and_ten_years_on(exported: Exported, office: str):
    data = exported.dossiers[office]
    for at in (datetime.now(UTC), datetime.now(UTC) + timedelta(days=3653)):
        report = exported.verify(data, at=at)
        assert report.ok, _failed(report)
        assert report.case == exported.case
        assert report.node == (B if office == "downloaded" else office)
    kinds = {line.kind for line in report.lines}
    assert {
        "manifest",
        "packet",
        "receipt",
        "licence",
        "agreement",
        "agreement-version",
        "timestamp",
    } <= kinds
    packets = [line for line in report.lines if line.kind == "packet"]
    assert len(packets) >= 9  # every packet of the case, both directions
    for line in packets:
        assert line.proven is not None, line  # proven by a timestamp over a checkpoint
        assert "timestamp" in line.proven_by
        assert "cosigned by" in line.proven_by
        assert line.revocation is Revocation.GOOD


def test_openssl_ts_verify_accepts_every_token_in_a_dossier(exported: Exported, tmp_path: Path):
    for office, data in exported.dossiers.items():
        files = unpack(data).files
        tokens = [p for p in files if p.startswith("timestamps/")]
        assert tokens, office
        leaves = _leaves(files)
        for path in tokens:
            name = path.removeprefix("timestamps/").removesuffix(".tsr")
            if name.startswith("leaves/"):  # a token over a survey or licence leaf itself
                stamped = leaves[int(name.removeprefix("leaves/"))]
            else:
                stamped = files[f"checkpoints/{name}.note"]
            openssl_ts_verify(files[path], stamped, exported.tsa, tmp_path / office / name)


def _leaves(files: dict[str, bytes]) -> dict[int, bytes]:
    """Leaf index -> leaf bytes, from the dossier's proof bundles."""
    bundles = [json.loads(files[p]) for p in files if p.startswith("proofs/")]
    return {b["index"]: base64.b64decode(b["leaf"]) for b in bundles}


def _rezip(data: bytes, change) -> bytes:  # type: ignore[no-untyped-def]
    """A copy of the dossier ZIP with ``change(files)`` applied to its entries."""
    src = zipfile.ZipFile(io.BytesIO(data))
    files = {i.filename: src.read(i) for i in src.infolist()}
    change(files)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return out.getvalue()


def _first(files: dict[str, bytes], prefix: str) -> str:
    return sorted(p for p in files if p.startswith(prefix))[0]


@pytest.mark.parametrize(
    ("prefix", "how"),
    [
        ("packets/", "remove"),
        ("receipts/", "change"),
        ("proofs/", "change"),
        ("timestamps/", "change"),
        ("timestamps/", "remove"),
        ("checkpoints/", "change"),
        ("licences/", "remove"),
        ("validation/", "change"),
    ],
)
def test_removing_or_changing_any_member_fails_on_that_line(
    exported: Exported, prefix: str, how: str
):
    data = exported.dossiers[A]
    target = _first(dict(unpack(data).files), prefix)

    def change(files: dict[str, bytes]) -> None:
        if how == "remove":
            del files[target]
        else:
            files[target] = files[target][:-3] + bytes(b ^ 1 for b in files[target][-3:])

    report = exported.verify(_rezip(data, change))
    assert not report.ok
    bad = [line for line in report.lines if line.subject == target and not line.ok]
    assert bad, _failed(report)
    assert bad[0].code == ("member-missing" if how == "remove" else "member-changed")
    page = render_html(report)
    assert ("清单列出的文件缺失" if how == "remove" else "文件已被改动") in page
    assert "卷宗验证不通过" in page


def test_a_dossier_without_the_agreement_version_in_force_fails(exported: Exported):
    files = dict(unpack(exported.dossiers[B]).files)
    (agreement,) = [p for p in files if p.startswith("agreements/")]
    del files[agreement]
    config = load_config(exported.demo / "nodes" / B / "node.toml")
    seal = load_node_keys(config.key_dir).seal
    report = exported.verify(
        pack(files, case=exported.case, node=B, seal=seal, at=datetime.now(UTC))
    )
    (line,) = [line for line in report.lines if line.kind == "agreement-version"]
    assert not line.ok
    assert line.code == "agreement-missing"
    assert "卷宗中没有办件包所依据的协议版本" in render_html(report)


def test_a_resigned_manifest_does_not_hide_a_changed_receipt_or_proof(exported: Exported):
    """Someone with a seal key rewrites members and signs a new manifest: the lines of
    the changed receipt and the tampered proof fail on their own."""
    files = dict(unpack(exported.dossiers[A]).files)
    receipt = _first(files, "receipts/")
    files[receipt] = files[receipt].replace(b".", b".x", 1)
    proof_path = _first(files, "proofs/packets/")
    proof = json.loads(files[proof_path])
    proof["index"] = proof["index"] + 1
    files[proof_path] = json.dumps(proof).encode()
    config = load_config(exported.demo / "nodes" / A / "node.toml")
    seal = load_node_keys(config.key_dir).seal
    forged = pack(files, case=exported.case, node=A, seal=seal, at=datetime.now(UTC))
    report = exported.verify(forged)
    lines = {line.subject: line for line in report.lines}
    assert not lines[receipt].ok
    assert "signature does not verify" in lines[receipt].problem
    member = proof_path.removeprefix("proofs/").removesuffix(".json")
    assert not lines[member].ok
    assert "proof" in lines[member].problem


def _crl_revoking(exported: Exported, node_id: str, revoked_at: datetime, published: datetime):  # type: ignore[no-untyped-def]
    fed = exported.demo / "pki"
    seal_cert = x509.load_pem_x509_certificate((fed / "nodes" / node_id / "seal.pem").read_bytes())
    root, key = _issuer_of(fed, seal_cert)
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(root.subject)
        .last_update(published)
        .next_update(published + timedelta(days=30))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(seal_cert.serial_number)
            .revocation_date(revoked_at)
            .build()
        )
        .sign(key, hashes.SHA256())
    )


def test_a_signature_made_after_its_certificate_was_revoked_is_reported_so(
    exported: Exported,
):
    """320982's seal is revoked as of its first signature in the dossier, but the CRL
    saying so is published only after the dossier was made: every 320982 signature is
    reported revoked, 420106's stay good."""
    report = exported.verify(exported.dossiers[A])
    theirs = [line for line in report.lines if line.signer.startswith(B) and line.claimed]
    first = min(line.claimed for line in theirs if line.claimed is not None)
    published = datetime.now(UTC) + timedelta(days=1)
    crl = _crl_revoking(exported, B, first, published)
    later = TrustBundle(exported.trust.roots, (*exported.trust.crls, crl))
    report = exported.verify(exported.dossiers[A], trust=later, at=published + timedelta(days=2))
    assert not report.ok
    for line in report.lines:
        if line.signer.startswith(B) and line.kind != "timestamp":
            assert not line.ok, line
            assert line.revocation is Revocation.REVOKED, line
            assert "before this signature" in line.revocation_detail
            assert line.code == "revocation-revoked"
        elif line.signer.startswith(A):
            assert line.ok, line
    page = render_html(report)
    assert "证书在签署前已被吊销" in page
    assert "签署前已吊销" in page


def test_a_revocation_after_the_timestamp_leaves_the_signatures_good(exported: Exported):
    """Revoked an hour after the dossier was stamped: the signatures a timestamp proves
    stay good ("revoked later"); the agreement signatures, which only their signer's
    claim dates, cannot be placed before the revocation and are indeterminate."""
    revoked_at = datetime.now(UTC) + timedelta(hours=1)
    crl = _crl_revoking(exported, B, revoked_at, revoked_at + timedelta(hours=1))
    later = TrustBundle(exported.trust.roots, (*exported.trust.crls, crl))
    report = exported.verify(exported.dossiers[A], trust=later, at=revoked_at + timedelta(days=1))
    theirs = [line for line in report.lines if line.signer.startswith(B)]
    proven = [line for line in theirs if line.proven is not None and line.kind != "timestamp"]
    assert proven
    for line in proven:
        assert line.ok, line
        assert line.revocation is Revocation.GOOD
        assert "revoked later" in line.revocation_detail
    unproven = [line for line in theirs if line.kind == "agreement"]
    assert unproven
    for line in unproven:
        assert line.revocation is Revocation.INDETERMINATE, line
        assert not line.ok


def _issuer_of(fed: Path, cert: x509.Certificate):  # type: ignore[no-untyped-def]
    for pem in fed.glob("federation-*/root.pem"):
        root = x509.load_pem_x509_certificate(pem.read_bytes())
        if root.subject == cert.issuer:
            key = serialization.load_pem_private_key((pem.parent / "root.key").read_bytes(), None)
            return root, key
    raise AssertionError(f"no root of {cert.issuer.rfc4514_string()} under {fed}")


def test_verify_cli_writes_the_html_and_json_reports(exported: Exported, tmp_path: Path):
    dossier = tmp_path / "a.zip"
    dossier.write_bytes(exported.dossiers[B])
    later = (datetime.now(UTC) + timedelta(days=3653)).isoformat()
    result = subprocess.run(
        [
            *TONGBAN,
            "dossier",
            "verify",
            str(dossier),
            "--trust",
            str(exported.demo / "pki" / "trust-bundle.pem"),
            "--tsa-trust",
            str(exported.tsa.ca),
            "--at",
            later,
            "--report-html",
            str(tmp_path / "r.html"),
            "--report-json",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "卷宗验证通过" in page
    assert "签署时有效" in page
    assert "可信时间戳" in page
    assert json.loads((tmp_path / "r.json").read_text())["valid"] is True
    dossier.write_bytes(b"not a zip")
    bad = subprocess.run(
        [
            *TONGBAN,
            "dossier",
            "verify",
            str(dossier),
            "--trust",
            str(exported.demo / "pki" / "trust-bundle.pem"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "error[not-a-dossier]" in bad.stderr
    with pytest.raises(DossierError):
        unpack(b"PK\x03\x04garbage")


def _small_disk() -> None:
    """In the child: files may not grow past 4 KiB, as on a disk that fills mid-write."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_a_report_that_cannot_be_written_whole_leaves_the_earlier_one(
    exported: Exported, tmp_path: Path
):
    """The report was written in place: a disk full half-way left the earlier report cut
    short (the HTML report is larger than the 4 KiB the child may write)."""
    dossier = tmp_path / "a.zip"
    dossier.write_bytes(exported.dossiers[B])
    earlier = tmp_path / "r.html"
    earlier.write_text("<p>the earlier report</p>", encoding="utf-8")
    result = subprocess.run(
        [*TONGBAN, "dossier", "verify", str(dossier),
         "--trust", str(exported.demo / "pki" / "trust-bundle.pem"),
         "--tsa-trust", str(exported.tsa.ca), "--report-html", str(earlier)],
        capture_output=True, text=True, timeout=120, check=False, preexec_fn=_small_disk,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error[file-unwritable]" in result.stderr
    assert earlier.read_text(encoding="utf-8") == "<p>the earlier report</p>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "r.html"]


def _survey_line(report: Report):  # type: ignore[no-untyped-def]
    (line,) = [line for line in report.lines if line.kind == "survey"]
    return line


@pytest.mark.parametrize("office", [C, B])
def test_survey_case_dossiers_from_both_offices_verify_today_and_ten_years_on(
    exported: Exported, office: str
):
    """371422 keeps the media sealed at rest, 320982 its verified copy: both dossiers hold
    the sealed report, its evidence chain and the media in plaintext, and verify."""
    data = exported.dossiers[f"survey-{office}"]
    files = unpack(data).files
    (report_path,) = [p for p in files if p.startswith("surveys/") and p.endswith("/report.jws")]
    base = report_path.removesuffix("report.jws")
    media = [p for p in files if p.startswith(base + "media/")]
    assert any(p.endswith(".mkv") for p in media)
    assert any(p.endswith(".png") for p in media)
    assert f"proofs/{report_path}.json" in files
    for at in (datetime.now(UTC), datetime.now(UTC) + timedelta(days=3653)):
        report = exported.verify(data, at=at)
        assert report.ok, _failed(report)
        assert (report.case, report.node) == (exported.survey_case, office)
        line = _survey_line(report)
        assert line.subject == report_path
        assert line.signer.startswith(C)  # sealed by the surveying office
        assert line.revocation is Revocation.GOOD
        assert line.proven is not None
        assert "timestamp" in line.proven_by
        assert f"{len(media)} of {len(media)} media files" in line.detail
    page = render_html(report)
    assert "远程勘查报告" in page
    assert "卷宗验证通过" in page


def test_a_survey_dossier_without_media_verifies_and_says_so(exported: Exported):
    data = exported.dossiers["survey-no-media"]
    files = unpack(data).files
    assert not [p for p in files if "/media/" in p]
    assert [p for p in files if p.endswith("/evidence.jsonl")]
    report = exported.verify(data)
    assert report.ok, _failed(report)
    assert " 0 of " in _survey_line(report).detail


def _forge(exported: Exported, office: str, change, *, case: str | None = None) -> bytes:  # type: ignore[no-untyped-def]
    """The survey dossier of ``office`` with ``change(files)`` applied and a new manifest
    signed by that office's own seal (someone with the key rewriting members)."""
    files = dict(unpack(exported.dossiers[f"survey-{office}"]).files)
    change(files)
    config = load_config(exported.demo / "nodes" / office / "node.toml")
    seal = load_node_keys(config.key_dir).seal
    return pack(
        files, case=case or exported.survey_case, node=office, seal=seal, at=datetime.now(UTC)
    )


def _report_path(files: dict[str, bytes]) -> str:
    return _first(files, "surveys/").rsplit("/", 1)[0] + "/report.jws"


@pytest.mark.parametrize("how", ["rezip", "resign"])
def test_tampering_with_the_survey_report_fails_on_its_line(exported: Exported, how: str):
    def change(files: dict[str, bytes]) -> None:
        path = _report_path(files)
        files[path] = files[path][:-6] + bytes(b ^ 1 for b in files[path][-6:-3]) + files[path][-3:]

    if how == "rezip":
        data = _rezip(exported.dossiers[f"survey-{B}"], change)
    else:
        data = _forge(exported, B, change)
    report = exported.verify(data)
    line = _survey_line(report)
    assert not report.ok
    assert not line.ok
    assert line.code == "signature", line
    if how == "rezip":
        assert any(
            x.subject == line.subject and x.code == "member-changed" for x in report.lines
        ), _failed(report)


@pytest.mark.parametrize("office", [C, B])
@pytest.mark.parametrize("how", ["rezip", "resign"])
def test_tampering_with_a_media_file_fails_on_the_report_line(
    exported: Exported, office: str, how: str
):
    target = ""

    def change(files: dict[str, bytes]) -> None:
        nonlocal target
        target = sorted(p for p in files if "/media/" in p and p.endswith(".mkv"))[-1]
        files[target] = files[target][:-3] + bytes(b ^ 1 for b in files[target][-3:])

    if how == "rezip":
        data = _rezip(exported.dossiers[f"survey-{office}"], change)
        report = exported.verify(data)
        (member,) = [x for x in report.lines if x.subject == target]
        assert member.code == "member-changed"
    else:
        report = exported.verify(_forge(exported, office, change))
    line = _survey_line(report)
    assert not line.ok
    assert line.code == "survey-media", line
    assert target.rsplit("/", 1)[1] in line.problem
    assert "勘查影像资料与报告不符" in render_html(report)


def test_a_survey_report_not_bound_to_the_dossiers_case_fails(exported: Exported):
    """The same sealed report in a dossier of another case, or with the case's
    survey-report event gone from case.json, fails on its line."""
    other = _forge(exported, B, lambda files: None, case=exported.case)
    line = _survey_line(exported.verify(other))
    assert not line.ok
    assert line.code == "survey-case"
    assert exported.survey_case in line.problem

    def drop_event(files: dict[str, bytes]) -> None:
        case = json.loads(files["case.json"])
        case["events"] = [e for e in case["events"] if e.get("event") != "survey-report"]
        files["case.json"] = json.dumps(case).encode()

    line = _survey_line(exported.verify(_forge(exported, B, drop_event)))
    assert not line.ok
    assert line.code == "survey-case"
    assert "case.json" in line.problem


def test_a_survey_dossier_without_its_evidence_chain_fails(exported: Exported):
    def drop(files: dict[str, bytes]) -> None:
        del files[_report_path(files).removesuffix("report.jws") + "evidence.jsonl"]

    line = _survey_line(exported.verify(_forge(exported, C, drop)))
    assert not line.ok
    assert line.code == "survey-evidence"


@pytest.mark.parametrize("office", [C, B])
def test_survey_reports_and_licences_carry_a_timestamp_over_their_own_leaf(
    exported: Exported, office: str
):
    """With a TSA configured each survey-report and licence-event leaf gets a token of
    its own (before the checkpoints are stamped); the report's and the licence's lines
    are proven by it, and a changed token fails the line even under a manifest signed
    anew."""
    data = exported.dossiers[f"survey-{office}"]
    files = dict(unpack(data).files)
    leaves = _leaves(files)
    own = sorted(int(p.split("/")[2].removesuffix(".tsr")) for p in files if "/leaves/" in p)
    kinds = sorted(json.loads(leaves[i])["kind"] for i in own)
    assert "survey-report" in kinds
    # the issuing office logs the licence-event; the receiving one logs none (protocol §7)
    assert ("licence-event" in kinds) == (office == B)
    report = exported.verify(data)
    stamped = ("survey", "licence") if office == B else ("survey",)
    for line in report.lines:
        if line.kind in stamped:
            assert "over leaf" in line.proven_by, line
            assert line.proven is not None
    survey = _survey_line(report)
    index = int(survey.proven_by.split("over leaf ")[1].split()[0])

    def change(files: dict[str, bytes]) -> None:
        path = f"timestamps/leaves/{index}.tsr"
        files[path] = files[path][:-3] + bytes(b ^ 1 for b in files[path][-3:])

    line = _survey_line(exported.verify(_forge(exported, office, change)))
    assert not line.ok
    assert line.code == "proof"
    assert f"timestamps/leaves/{index}.tsr" in line.problem


def test_export_from_a_database_not_yet_migrated_says_how_to_migrate(
    exported: Exported, tmp_path: Path
) -> None:
    """A read-only export does not migrate (a node of the release before may still run
    on the database): it names the step the tables are at and what to run."""
    import shutil

    node = exported.demo / "nodes" / B
    shutil.copytree(node / "data", tmp_path / "data")
    shutil.copy(node / "node.toml", tmp_path / "node.toml")
    conn = sqlite3.connect(tmp_path / "data" / "relay.sqlite3")
    with conn:
        conn.execute("UPDATE schema_versions SET version = 2 WHERE component = 'relay'")
    conn.close()
    target = tmp_path / "case.zip"
    result = subprocess.run(
        [*TONGBAN, "dossier", "export", exported.case, "--config",
         str(tmp_path / "node.toml"), "--out", str(target)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "error[schema-behind]" in result.stderr
    assert "relay tables are at schema version 2" in result.stderr
    assert "tongban db migrate" in result.stderr
    assert not target.exists()


def _repacked(exported: Exported, office: str, files: dict[str, bytes], **kw: Any) -> bytes:
    config = load_config(exported.demo / "nodes" / office / "node.toml")
    seal = kw.pop("seal", None) or load_node_keys(config.key_dir).seal
    return pack(files, case=kw.pop("case", exported.case), node=kw.pop("node", office),
                seal=seal, at=datetime.now(UTC))  # fmt: skip


def test_a_manifest_signed_by_another_office_than_it_names_fails(exported: Exported):
    """Any seal of the federation over a manifest naming 420106 passed, and the report
    presented 420106 as the exporting office."""
    files = dict(unpack(exported.dossiers[A]).files)
    config = load_config(exported.demo / "nodes" / B / "node.toml")
    forged = _repacked(exported, A, files, seal=load_node_keys(config.key_dir).seal)
    report = exported.verify(forged)
    [manifest] = [line for line in report.lines if line.kind == "manifest"]
    assert (manifest.ok, manifest.code) == (False, "wrong-node")
    assert not report.ok
    assert "清单签署方不是清单所称的导出单位" in render_html(report)


def test_a_dossier_of_another_case_than_its_manifest_names_fails(exported: Exported):
    """The manifest's case was bound to nothing: a dossier labelled with one case could
    carry another's packets, or a case file that is not one."""
    files = dict(unpack(exported.dossiers[A]).files)
    report = exported.verify(_repacked(exported, A, files))
    assert [line.ok for line in report.lines if line.kind == "case"] == [True]
    relabelled = exported.verify(_repacked(exported, A, files, case="420106-20990101-OTHERCAS"))
    [line] = [line for line in relabelled.lines if line.kind == "case"]
    assert (line.ok, line.code) == (False, "wrong-case")
    assert not relabelled.ok
    broken = exported.verify(_repacked(exported, A, {**files, "case.json": b"\xff not json"}))
    [line] = [line for line in broken.lines if line.kind == "case"]
    assert not line.ok
    assert "not JSON" in line.problem


def test_an_agreement_party_must_be_its_signer_not_a_prefix_of_it(exported: Exported):
    files = dict(unpack(exported.dossiers[A]).files)
    path = _first(files, "agreements/")
    signed = json.loads(files[path])
    ours = next(s for s in signed["signatures"] if s["party"] == A)
    ours["party"] = A[:5]  # "42010": a prefix of the signer 420106
    report = exported.verify(_repacked(exported, A, {**files, path: json.dumps(signed).encode()}))
    [line] = [line for line in report.lines if line.subject == f"{path} ({A[:5]})"]
    assert (line.ok, line.code) == (False, "wrong-party")


def test_a_dossier_whose_zip_member_is_damaged_is_not_a_dossier_not_a_traceback(
    exported: Exported,
):
    """Bytes flipped in a member's deflate stream raised zlib.error out of the verifier
    (an unknown compression method NotImplementedError, an encryption flag RuntimeError)."""
    data = bytearray(exported.dossiers[A])
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo("case.json")
    assert info.compress_type == zipfile.ZIP_DEFLATED
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_length + extra_length
    original = unpack(bytes(data)).files["case.json"]
    refused = 0
    for at in range(start, start + info.compress_size, 3):  # some give a CRC error, some
        damaged = bytearray(data)  # an invalid deflate stream, a few (bits the stream
        damaged[at] ^= 0xFF  # does not use) nothing at all
        try:
            same = unpack(bytes(damaged)).files["case.json"]
        except DossierError as exc:
            refused += "case.json" in str(exc)
        else:
            assert same == original
    assert refused > info.compress_size // 6


def _ca(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Certificate | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    now: datetime,
    *,
    path_length: int,
) -> x509.Certificate:
    """A CA certificate (self-signed when ``issuer`` is None)."""
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=2))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _crl(
    issuer: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    published: datetime,
    *,
    revoked: tuple[x509.Certificate, datetime] | None = None,
) -> x509.CertificateRevocationList:
    """A CRL of ``issuer`` published 5 minutes before ``published``, for 30 days,
    revoking ``revoked`` (a certificate, as of a time) when given."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(published - timedelta(minutes=5))
        .next_update(published + timedelta(days=30))
    )
    if revoked is not None:
        cert, at = revoked
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(cert.serial_number)
            .revocation_date(at)
            .build()
        )
    return builder.sign(key, hashes.SHA256())


def test_a_signature_under_a_revoked_intermediate_ca_is_reported_revoked(exported: Exported):
    """Revocation was checked for the leaf only (against its issuer's CRLs): a seal
    certificate from a sub-CA the root had revoked before the signature verified good."""
    config = load_config(exported.demo / "nodes" / A / "node.toml")
    seal = load_node_keys(config.key_dir).seal
    original = seal.chain[0]
    now = datetime.now(UTC)
    # a root of its own (the development roots allow no intermediate: path length 0)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _ca("Test Root", root_key, None, root_key, now, path_length=1)
    roots = (*exported.trust.roots, root)
    sub_key = ec.generate_private_key(ec.SECP256R1())
    sub_ca = _ca("Test Sub CA", sub_key, root, root_key, now, path_length=0)
    leaf = x509.CertificateBuilder(
        subject_name=original.subject, issuer_name=sub_ca.subject,
        public_key=original.public_key(), serial_number=x509.random_serial_number(),
        not_valid_before=now - timedelta(hours=2), not_valid_after=now + timedelta(days=30),
    )  # fmt: skip
    for ext in original.extensions:
        if ext.oid != x509.ExtensionOID.AUTHORITY_KEY_IDENTIFIER:
            leaf = leaf.add_extension(ext.value, ext.critical)
    leaf_cert = leaf.add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(sub_key.public_key()), critical=False
    ).sign(sub_key, hashes.SHA256())
    signer = Signer(seal.key, (leaf_cert, sub_ca))
    forged = _repacked(exported, A, dict(unpack(exported.dossiers[A]).files), seal=signer)
    # the sub-CA says its leaf is fine: worthless once the sub-CA is revoked
    clean_sub_crl = _crl(sub_ca, sub_key, now)
    clean_root_crl = _crl(root, root_key, now - timedelta(minutes=5))
    before = TrustBundle(roots, (*exported.trust.crls, clean_sub_crl, clean_root_crl))
    [line] = [x for x in exported.verify(forged, trust=before).lines if x.kind == "manifest"]
    assert line.ok, line  # the path holds while the sub-CA stands
    root_crl = _crl(root, root_key, now, revoked=(sub_ca, now - timedelta(hours=1)))
    after = TrustBundle(roots, (*exported.trust.crls, clean_sub_crl, clean_root_crl, root_crl))
    [line] = [x for x in exported.verify(forged, trust=after).lines if x.kind == "manifest"]
    assert not line.ok
    assert line.revocation is Revocation.REVOKED
    assert "CA certificate" in line.revocation_detail


def test_a_node_holding_a_later_agreement_version_exports_the_one_the_case_used(
    exported: Exported, tmp_path: Path
):
    """The agreement members were named by id: the later version (listed after) took the
    place of the one the packets name, and the dossier failed its own step 7 for ever."""
    from agreements.document import parse_agreement
    from agreements.signatures import sign_agreement
    from agreements.signed import SignedAgreement

    source = exported.demo / "agreement" / "agreement.signed.json"
    first = json.loads(source.read_bytes())
    later = parse_agreement({**first["document"], "version": 2, "supersedes": 1})
    signed = SignedAgreement(later)
    for office in (A, B, C):
        config = load_config(exported.demo / "nodes" / office / "node.toml")
        seal = load_node_keys(config.key_dir).seal
        signed = signed.with_signature(sign_agreement(later, seal, at=datetime.now(UTC)))
    v2 = tmp_path / "agreement-v2.signed.json"
    v2.write_bytes(signed.to_bytes())
    node_toml = exported.demo / "nodes" / A / "node.toml"
    both = node_toml.read_text(encoding="utf-8").replace(
        f'files = ["{source}"]', f'files = ["{source}", "{v2}"]'
    )
    assert str(v2) in both
    config_path = node_toml.with_name("node-v2.toml")  # beside it: its paths are relative
    config_path.write_text(both, encoding="utf-8")
    target = tmp_path / "case.zip"
    result = subprocess.run(
        [*TONGBAN, "dossier", "export", exported.case, "--config", str(config_path),
         "--out", str(target)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    files = unpack(target.read_bytes()).files
    held = sorted(p for p in files if p.startswith("agreements/"))
    assert held == [f"agreements/{first['document']['id']}-v{first['document']['version']}.json"]
    report = exported.verify(target.read_bytes())
    assert [line.ok for line in report.lines if line.kind == "agreement-version"] == [True]


def test_the_chinese_report_says_what_proved_each_time_in_beijing_time(exported: Exported):
    """The Chinese view read only "由可信时间戳（覆盖审计日志检查点）证明" for every line
    and gave times in UTC; which token over which checkpoint, and who cosigned it, were
    in the English view only."""
    page = render_html(exported.verify(exported.dossiers[A]))
    zh = " ".join(re.findall(r'<span lang="zh">([^<]*)</span>', page))
    assert re.search(r"可信时间戳（序号 \d+，CN=tongban test TSA）覆盖审计日志 \S+ 的检查点", zh)
    assert "见证" in zh  # the partner that cosigned the checkpoint
    assert "（北京时间）" in zh
    assert "UTC" not in zh
