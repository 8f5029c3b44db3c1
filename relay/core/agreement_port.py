"""The relay's :class:`~relay.core.ports.Authorizer` over :func:`agreements.authorize`.

Sending side (``request.agreement`` is None): the first agreement that permits gives
the reference pinned in the packet — ``{id, version, digest}`` with ``digest`` the
lowercase hex SHA-256 of that agreement version's document bytes.

Receiving side (``request.agreement`` set from the packet): the decision must permit
under exactly that agreement version and document digest; a permit under another one
is refused with ``agreement-mismatch`` (the two nodes disagree on which agreement
governs the step: an operator must look). Actions and modes the agreements package
does not know are refused as ``unknown-action`` / ``unknown-mode``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from agreements.actions import Action
from agreements.authorize import AgreementIndex, Deny, Request, authorize
from agreements.events import document_digest
from agreements.model import ServiceMode
from relay.core.ports import AgreementRef, AuthorizationDecision, AuthorizationRequest

__all__ = ["IndexAuthorizer"]


class IndexAuthorizer:
    """``index`` returns the node's current agreement index (it may be swapped as
    agreements are signed, superseded or withdrawn)."""

    def __init__(self, index: Callable[[], AgreementIndex]) -> None:
        self._index = index

    def __call__(self, request: AuthorizationRequest, at: datetime) -> AuthorizationDecision:
        try:
            action = Action(request.action)
        except ValueError:
            return AuthorizationDecision(False, "unknown-action")
        try:
            mode = ServiceMode(request.mode)
        except ValueError:
            return AuthorizationDecision(False, "unknown-mode")
        index = self._index()
        decision = authorize(
            index, Request(request.sender, request.receiver, request.matter, action, mode), at
        )
        if isinstance(decision, Deny):
            return AuthorizationDecision(False, str(decision.reason))
        clause = decision.clause
        ref: AgreementRef | None = None
        for lc in index.candidates(request.sender, request.receiver):
            if lc.agreement.ref == (clause.agreement_id, clause.version):
                ref = AgreementRef(
                    clause.agreement_id, clause.version, document_digest(lc.agreement)
                )
                break
        if ref is None:  # pragma: no cover - authorize only permits candidates
            return AuthorizationDecision(False, "no-agreement")
        if request.agreement is not None and request.agreement != ref:
            return AuthorizationDecision(False, "agreement-mismatch")
        return AuthorizationDecision(True, None, ref)
