"""The licence entitlement check read from a signed-agreement file.

An office is entitled to issue licence type ``T`` at time ``t`` when the agreement, as
it stood at ``t`` (signatures and events dated up to ``t``), permits the
``issue-licence`` action on matter ``T`` from that office to at least one other party
(:func:`agreements.authorize`): the agreement is fully signed, in force, not suspended,
the office has not withdrawn, and the clause for ``T`` lists it among the issuers.
"""

from __future__ import annotations

from datetime import datetime

from relay.cli._common import CliError
from signing.certificates import TrustBundle
from signing.licence import Entitlement

__all__ = ["entitlement_from_agreement"]


def entitlement_from_agreement(data: bytes, bundle: TrustBundle, path: str) -> Entitlement:
    """Parse the file now (usage errors early); decide per call."""
    from agreements import Action, AgreementError, AgreementIndex, Request, authorize
    from agreements.signed import SignedAgreement

    try:
        signed = SignedAgreement.from_bytes(data)
    except AgreementError as exc:
        raise CliError("agreement", f"{path} is not a signed agreement: {exc}") from None

    def entitled(issuer: str, licence_type: str, at: datetime) -> bool:
        evaluation = signed.evaluate(bundle, at=at)
        index = AgreementIndex([evaluation.lifecycle])
        for party in signed.agreement.party_ids - {issuer}:
            request = Request(
                sender=issuer, recipient=party, matter=licence_type, action=Action.ISSUE_LICENCE
            )
            if authorize(index, request, at).permitted:
                return True
        return False

    return entitled
