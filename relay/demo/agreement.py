"""Step 3: a multilateral agreement drafted, signed by each party in turn, verified,
and a few authorization decisions under it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from agreements.actions import Action
from agreements.authorize import AgreementIndex, Deny, Permit, Request, authorize
from agreements.catalog import default_catalog
from agreements.draft import draft_from_template
from agreements.lifecycle import State
from agreements.model import ServiceMode
from agreements.signatures import sign_agreement
from agreements.signed import SignedAgreement
from relay.demo.context import Demo
from relay.demo.errors import StepFailed
from relay.demo.offices import DAFENG, NINGJIN, WUCHANG
from relay.demo.report import Reporter
from signing.profiles import Profile

__all__ = ["AGREEMENT_ID", "agreement_step", "demo_template"]

AGREEMENT_ID = "demo-kuasheng-tongban-2026"
FOOD = "food-business-licence"
_ZH = {Profile.DEFAULT: "默认配置", Profile.SM: "国密配置"}
PESTICIDE = "pesticide-retail-licence"


def demo_template(demo: Demo) -> dict[str, Any]:
    """The agreement the three offices sign (catalog defaults fill the rest).

    - 食品经营许可: each office handles and issues; 420106 receives for the other two
      and they for it.
    - 农药经营许可: 320982 handles and issues; 420106 and 371422 receive for it, and
      371422 surveys on its behalf (委托勘查: the shop is in Ningjin).

    With a province in the SM profile the agreement names the profiles of its parties
    (``crypto_profiles``: default and sm), so the mixed federation works because the
    parties signed that it may; without, the field is left out (any profile).
    """
    w, d, n = WUCHANG.node_id, DAFENG.node_id, NINGJIN.node_id
    start = demo.now() - timedelta(days=1)
    template = {
        "format": "tongban-agreement/1",
        "id": AGREEMENT_ID,
        "version": 1,
        "supersedes": None,
        "title": {
            "zh": "武昌区、大丰区、宁津县政务服务跨省通办合作协议（演示）",
            "en": "Cross-province handling agreement between Wuchang, Dafeng and Ningjin (demo)",
        },
        "parties": [
            {
                "id": o.node_id,
                "name_zh": o.name_zh,
                "name_en": o.name_en,
                "province": o.province_zh,
            }
            for o in demo.offices
        ],
        "valid_from": start.replace(microsecond=0).isoformat(),
        "valid_until": (start + timedelta(days=3 * 365)).replace(microsecond=0).isoformat(),
        "matters": [
            {
                "matter": FOOD,
                "roles": {
                    "receive_for": {w: [d, n], d: [w], n: [w]},
                    "handle": [w, d, n],
                    "survey_for": {},
                    "issue": [w, d, n],
                },
            },
            {
                "matter": PESTICIDE,
                "modes": ["proxy_receipt"],
                "roles": {
                    "receive_for": {w: [d], n: [d]},
                    "handle": [d],
                    "survey_for": {n: [d]},
                    "issue": [d],
                },
            },
        ],
        "data_categories": [
            "applicant-identity",
            "business-premises",
            "case-materials",
            "licence-data",
        ],
        "retention_years": 30,
    }
    if demo.sm_federations:
        template["crypto_profiles"] = sorted({demo.profile(o) for o in demo.offices})
    return template


async def agreement_step(demo: Demo, out: Reporter) -> None:
    catalog = default_catalog()
    agreement = draft_from_template(demo_template(demo), catalog)
    demo.agreement_path.parent.mkdir(parents=True)
    (demo.agreement_path.parent / "draft.json").write_text(
        SignedAgreement(agreement).to_bytes().decode(), encoding="utf-8"
    )
    out.info(f"起草 drafted {agreement.id} v{agreement.version}: {agreement.title_zh}")
    profiles = sorted(agreement.crypto_profiles or ())
    out.info(
        f"  密码配置 cryptographic profiles: {', '.join(profiles) or 'any (not named)'}"
        + ("（含国密 SM）" if "sm" in profiles else "")
    )
    for code, clause in sorted(agreement.clauses.items()):
        entry = catalog.get(code)
        if entry is not None:
            out.info(
                f"  {entry.name_zh} {entry.name_en}: {clause.time_limit_working_days} 个工作日 "
                f"working days, 现场勘查 site survey "
                f"{'required' if clause.survey_required else 'not required'}"
            )
    bundle = demo.bundle()
    signed = SignedAgreement(agreement)
    for office in demo.offices:
        signed = signed.with_signature(
            sign_agreement(agreement, demo.signer(office.node_id), at=demo.now())
        )
        evaluation = signed.evaluate(bundle, at=demo.now())
        status = evaluation.status
        missing = ", ".join(sorted(status.missing)) or "—"
        out.info(
            f"{office.short} 签署 signs → signed by {', '.join(status.signed)}; "
            f"missing {missing}; state {evaluation.lifecycle.state.value}"
        )
    demo.agreement_path.write_bytes(signed.to_bytes())
    reread = SignedAgreement.from_bytes(demo.agreement_path.read_bytes())
    evaluation = reread.evaluate(bundle, at=demo.now())
    state = evaluation.lifecycle.state_at(demo.now())
    if not evaluation.status.complete or state is not State.ACTIVE:
        raise StepFailed(f"agreement not active after all signatures: {state}")
    out.proved(
        "三方签名均经信任包验证，协议生效",
        f"all three party signatures verify against the trust bundle; the agreement is "
        f"{state.value} ({demo.agreement_path.name})",
    )

    index = AgreementIndex([evaluation.lifecycle])
    at = demo.now()
    checks: list[tuple[Request, str | None, str]] = [
        (
            Request(
                WUCHANG.node_id, DAFENG.node_id, FOOD, Action.SUBMIT, ServiceMode.PROXY_RECEIPT
            ),
            None,
            "武昌区代收、大丰区办理食品经营许可",
        ),
        (
            Request(DAFENG.node_id, NINGJIN.node_id, PESTICIDE, Action.REQUEST_SURVEY),
            None,
            "大丰区委托宁津县勘查农药经营场所",
        ),
        (
            Request(WUCHANG.node_id, NINGJIN.node_id, PESTICIDE, Action.SUBMIT),
            "role-not-granted",
            "宁津县不办理农药经营许可",
        ),
        (
            Request(WUCHANG.node_id, DAFENG.node_id, FOOD, Action.SUBMIT, ServiceMode.ONLINE),
            "mode-not-allowed",
            "食品经营许可不得全程网办",
        ),
        (
            Request(WUCHANG.node_id, DAFENG.node_id, "publication-retail-licence", Action.SUBMIT),
            "matter-not-covered",
            "协议未约定出版物零售许可",
        ),
    ]
    w, d = Profile(demo.profile(WUCHANG)), Profile(demo.profile(DAFENG))
    named = Request(
        WUCHANG.node_id, DAFENG.node_id, FOOD, Action.SUBMIT, ServiceMode.PROXY_RECEIPT, w, d
    )
    checks.append((named, None, f"协议允许两方的密码配置（{_ZH[w]} → {_ZH[d]}）"))
    for request, expected, zh in checks:
        decision = authorize(index, request, at)
        what = f"{request.sender}→{request.recipient} {request.matter} {request.action.value}"
        if request.mode is not None:
            what += f" ({request.mode.value})"
        if request.sender_profile is not None and request.recipient_profile is not None:
            what += f" [{request.sender_profile.value} → {request.recipient_profile.value}]"
        if expected is None and isinstance(decision, Permit):
            ref = decision.clause
            out.proved(
                f"准许：{zh}",
                f"permit {what} — clause {ref.agreement_id} v{ref.version} "
                f"/ {ref.matter} / {ref.role.value}",
            )
        elif isinstance(decision, Deny) and decision.reason.value == expected:
            out.proved(f"拒绝：{zh}", f"deny {what} — reason {decision.reason.value}")
        else:
            raise StepFailed(f"unexpected decision for {what}: {decision}")
