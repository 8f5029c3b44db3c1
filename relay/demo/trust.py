"""Steps 1 and 2: the development PKI of three provinces, and the signing core at work."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography import x509

from certs.pki import init_federation, issue_node, revoke
from relay.demo.context import Demo
from relay.demo.errors import StepFailed
from relay.demo.offices import DAFENG, NINGJIN, WUCHANG
from relay.demo.report import Reporter
from signing.certificates import Purpose, validate_path
from signing.descriptor import verify_descriptor
from signing.errors import CertificateRejected, DecryptionFailed, InvalidSignature
from signing.files import sign_file, verify_file
from signing.hpke import HpkeSuite
from signing.keys import load_pem_chain
from signing.sealed import open_file, seal_file

__all__ = ["pki_step", "signing_step"]


def _chain(path: Path) -> tuple[x509.Certificate, ...]:
    return load_pem_chain(path.read_bytes())


def _short_serial(serial: int) -> str:
    return f"{serial:x}"[:12] + "…"


async def pki_step(demo: Demo, out: Reporter) -> None:
    """Three federation roots, one node per province, a CRL, the trust bundle."""
    now = demo.now()
    for office in demo.offices:
        profile = demo.profile(office)
        root = init_federation(
            demo.federation_dir(office), office.federation, now=now, profile=profile
        )
        out.info(
            f"{office.federation_zh} {office.federation} 联盟根证书 federation root "
            f"{', '.join(a.rfc4514_string() for a in root.subject)}, "
            f"valid until {root.not_valid_after_utc:%Y-%m-%d}"
        )
        if profile == "sm":
            out.info(
                f"{office.federation_zh}采用国密配置 SM profile: SM2 root signing SM2-with-SM3, "
                "and a P-256 transport root for the TLS channel only"
            )
    for office in demo.offices:
        endpoints = demo.endpoints(office.node_id)
        issue_node(
            demo.federation_dir(office),
            office.node_id,
            office.name_zh,
            "127.0.0.1",
            demo.node_dir(office.node_id),
            now=now,
            name_en=office.name_en,
            endpoints={"federation": endpoints["federation"], "public": endpoints["public"]},
        )
        keys = "SM2 seal + encryption keys" if demo.profile(office) == "sm" else "HPKE keys"
        out.info(f"{office.short} {office.place_en}: TLS + seal certificates, {keys}, node.json")
    # an old key of 420106, retired and revoked: the CRL in the bundle must refuse it
    retired = demo.root / "pki" / "retired-420106"
    issue_node(
        demo.federation_dir(WUCHANG),
        WUCHANG.node_id,
        WUCHANG.name_zh,
        "127.0.0.1",
        retired,
        now=now,
    )
    revoke(demo.federation_dir(WUCHANG), (retired / "seal.pem").read_bytes(), now=now)
    parts = []
    for office in demo.offices:
        fed = demo.federation_dir(office)
        parts += [(fed / "root.pem").read_bytes(), (fed / "crl.pem").read_bytes()]
    demo.bundle_path.write_bytes(b"".join(parts))
    bundle = demo.bundle()
    out.info(
        f"信任包 trust bundle {demo.bundle_path.relative_to(demo.root.parent)}: "
        f"{len(bundle.roots)} roots + {len(bundle.crls)} CRLs"
    )

    for office in demo.offices:
        d = demo.node_dir(office.node_id)
        tls = validate_path(
            _chain(d / "tls.pem"), bundle, purpose=Purpose.TLS_PEER, at=now, node_id=office.node_id
        )
        seal = validate_path(
            _chain(d / "seal.pem"), bundle, purpose=Purpose.SEAL, at=now, node_id=office.node_id
        )
        descriptor = verify_descriptor((d / "node.json").read_bytes(), bundle, at=now)
        suites = ", ".join(k.suite.value.split("-")[0] for k in descriptor.hpke_keys)
        out.proved(
            f"{office.short} 证书链经{office.federation_zh}根验证，节点描述签名有效",
            f"{office.node_id}'s TLS ({_short_serial(tls.serial)}) and seal "
            f"({_short_serial(seal.serial)}) certificates chain to the {office.federation} "
            f"root; its signed descriptor lists sealing keys {suites}",
        )
    d = demo.node_dir(WUCHANG.node_id)
    _expect_rejected(
        lambda: validate_path(_chain(d / "seal.pem"), bundle, purpose=Purpose.TLS_PEER, at=now),
        "wrong-purpose",
    )
    out.proved(
        "签章证书不能用于 TLS", "a seal certificate is refused as a TLS certificate: wrong-purpose"
    )
    _expect_rejected(
        lambda: validate_path(
            _chain(d / "tls.pem"), bundle, purpose=Purpose.TLS_PEER, at=now, node_id="320982"
        ),
        "wrong-node",
    )
    out.proved(
        "证书与节点代码绑定", "420106's certificate is refused when it claims 320982: wrong-node"
    )
    _expect_rejected(
        lambda: validate_path(_chain(retired / "seal.pem"), bundle, purpose=Purpose.SEAL, at=now),
        "revoked",
    )
    out.proved(
        "已吊销的旧证书被拒绝（CRL 在信任包中）",
        "420106's retired, revoked seal certificate is refused: revoked (CRL in the bundle)",
    )


def _expect_rejected(check: Callable[[], object], reason: str) -> None:
    try:
        check()
    except CertificateRejected as exc:
        if exc.reason != reason:
            raise StepFailed(f"expected {reason}, got {exc.reason}: {exc}") from None
        return
    raise StepFailed(f"a certificate that should be refused ({reason}) was accepted")


def _write_application(path: Path) -> None:
    lines = [
        "食品经营许可申请书 Food business licence application",
        "申请人 Applicant: 武汉江城餐饮管理有限公司 (Wuhan Jiangcheng Catering Co., Ltd.)",
        "经营场所 Premises: 江苏省盐城市大丰区幸福路 18 号 (18 Xingfu Road, Dafeng)",
        "经营项目 Scope: 热食类食品制售 (hot food preparation and sale)",
    ]
    path.write_text("\n".join(lines * 200) + "\n", encoding="utf-8")


async def signing_step(demo: Demo, out: Reporter) -> None:
    """420106 signs (hash-then-sign), 320982 verifies; a tampered copy is refused;
    a post-quantum sealed file opens at 320982 only."""
    now = demo.now()
    bundle = demo.bundle()
    files = demo.root / "files"
    files.mkdir()
    document = files / "application.txt"
    _write_application(document)
    with document.open("rb") as fh:
        token = sign_file(
            fh,
            name=document.name,
            media_type="text/plain",
            signer=demo.signer(WUCHANG.node_id),
            at=now,
        )
    (files / "application.txt.jws").write_text(token + "\n", encoding="ascii")
    out.info(
        f"420106 签署 signs {document.name} ({document.stat().st_size} bytes): "
        f"JWS over a manifest of its size and SHA-256 ({len(token)} characters)"
    )
    with document.open("rb") as fh:
        verified = verify_file(fh, token, bundle, at=demo.now())
    if verified.signer.node_id != WUCHANG.node_id:
        raise StepFailed(f"signature verified as {verified.signer.node_id}, not 420106")
    out.proved(
        "大丰区验证签名：文件未被改动，签署方为武昌区",
        f"320982 verifies it: signer {verified.signer.node_id} ({verified.signer.name}), "
        f"seal serial {_short_serial(verified.signer.serial)}, "
        f"signed {verified.signed_at:%Y-%m-%d %H:%M:%S}Z, SHA-256 "
        f"{verified.manifest.sha256_hex[:16]}…",
    )
    tampered = files / "application-tampered.txt"
    data = bytearray(document.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered.write_bytes(bytes(data))
    try:
        with tampered.open("rb") as fh:
            verify_file(fh, token, bundle, at=demo.now())
    except InvalidSignature:
        out.proved(
            "改动一个比特的副本被拒绝", "a copy with one bit flipped is refused: invalid signature"
        )
    else:
        raise StepFailed("a tampered copy verified")

    descriptor = verify_descriptor(
        (demo.node_dir(DAFENG.node_id) / "node.json").read_bytes(), bundle, at=demo.now()
    )
    sm = demo.profile(DAFENG) == "sm"
    suite = HpkeSuite.SM2_SM4GCM if sm else HpkeSuite.MLKEM768_X25519
    keys = [k for k in descriptor.hpke_keys if k.suite is suite]
    if not keys:
        raise StepFailed(f"320982's descriptor has no {suite.value} key")
    sealed = files / "application.txt.sealed"
    with document.open("rb") as src, sealed.open("wb") as dst:
        header = seal_file(src, dst, keys, recipient_node=DAFENG.node_id)
    kind = "SM2 + SM4-GCM, SM profile" if sm else "post-quantum hybrid HPKE"
    out.info(
        f"420106 加密发送给大丰区 seals it to 320982 with {header.entries[0].suite.value} "
        f"({kind}, key from 320982's verified descriptor): "
        f"{sealed.stat().st_size} bytes"
    )
    opened = files / "application.opened-by-320982.txt"
    with sealed.open("rb") as src, opened.open("wb") as dst:
        open_file(src, dst, demo.hpke_keys(DAFENG.node_id))
    if opened.read_bytes() != document.read_bytes():
        raise StepFailed("320982 opened different bytes")
    out.proved("大丰区解密得到原文", "320982 opens it: the same bytes as the original")
    try:
        with sealed.open("rb") as src, (files / "refused.tmp").open("wb") as dst:
            open_file(src, dst, demo.hpke_keys(NINGJIN.node_id))
    except DecryptionFailed:
        (files / "refused.tmp").unlink()
        out.proved("宁津县无法解密", "371422 cannot open it: decryption failed")
    else:
        raise StepFailed("371422 opened a file sealed to 320982")
