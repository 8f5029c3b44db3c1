"""The console tests' agreement: the offices' agreement re-signed listing the data
categories the hand-in form carries (applicant identity, business premises, materials)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from casekit_offices import START, Pki

from agreements.signatures import sign_agreement
from agreements.signed import SignedAgreement

CATEGORIES = ("applicant-identity", "business-premises", "case-materials")


def with_categories(pki: Pki, categories: tuple[str, ...] = CATEGORIES) -> Pki:
    """``pki`` whose agreement lists ``categories`` (signed by both offices again)."""
    at = START - timedelta(days=1)  # when make_pki signed the original
    agreement = SignedAgreement.from_bytes(pki.agreement.read_bytes()).agreement
    agreement = dataclasses.replace(agreement, data_categories=frozenset(categories))
    signed = SignedAgreement(agreement)
    for node in sorted(pki.keys):
        signed = signed.with_signature(sign_agreement(agreement, pki.keys[node].seal, at=at))
    path = pki.agreement.with_name("agreement-console.json")
    path.write_bytes(signed.to_bytes())
    return dataclasses.replace(pki, agreement=path)
