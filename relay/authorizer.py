"""The relay core's :class:`~relay.core.ports.Authorizer` over signed agreement files.

:func:`load_authorizer` reads the node's agreement files (``[agreements] files``),
verifies each party signature and signed event against the trust bundle
(:meth:`agreements.signed.SignedAgreement.evaluate`), indexes the resulting lifecycles
and answers the core's :class:`~relay.core.ports.AuthorizationRequest` with
:func:`agreements.authorize.authorize` at the time of the request. When the request
pins an agreement (the receiving side: the packet names id, version and document
digest), the granting agreement must be exactly that one (``agreement-mismatch``); a
pinned version this node does not hold fully signed, when it holds no fully signed later
version of that agreement either, is ``agreement-unknown`` (the node may not have loaded
it yet: the sender retries; :attr:`AgreementAuthorizer.unknown` remembers who sent under
which for the staff alert, :func:`unknown_agreement_alerts`).
Unknown actions or modes are refused (``unknown-action``, ``mode-not-allowed``). The
request's cryptographic profiles go to the decision (``profile-not-allowed``, step 9 of
:mod:`agreements.authorize`); that refusal comes with a sentence naming the profiles
the agreement allows and those of the two nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

from agreements.actions import Action
from agreements.authorize import AgreementIndex, Deny, Reason, Request, authorize
from agreements.errors import AgreementError
from agreements.events import document_digest
from agreements.model import Agreement, ServiceMode
from agreements.signed import Evaluation, SignedAgreement
from relay.alerts import Severity, StaffAlert
from relay.core.ports import (
    AGREEMENT_UNKNOWN,
    AgreementRef,
    AuthorizationDecision,
    AuthorizationRequest,
)
from signing.certificates import TrustBundle
from signing.profiles import Profile

__all__ = [
    "AgreementAuthorizer",
    "AgreementLoadError",
    "AgreementSwitch",
    "load_authorizer",
    "unknown_agreement_alerts",
]

UNKNOWN_KEPT = 64
"""Agreement versions unknown here that :attr:`AgreementAuthorizer.unknown` remembers."""

UNKNOWN_ALERT_FOR = timedelta(hours=24)
"""How long after the last packet refused as ``agreement-unknown`` its alert stands."""


class AgreementLoadError(Exception):
    """An agreement file that cannot be read or parsed (names the file)."""


class AgreementAuthorizer:
    """Callable authorizer over an :class:`AgreementIndex`."""

    def __init__(
        self,
        index: AgreementIndex,
        digests: dict[tuple[str, int], str],
        loaded: tuple[tuple[SignedAgreement, Evaluation], ...] = (),
    ) -> None:
        self._index = index
        self._digests = digests
        self.loaded = loaded  # the files as read and evaluated (for the audit log)
        self.unknown: dict[AgreementRef, tuple[str, datetime]] = {}
        """Pinned versions refused as ``agreement-unknown``: the last sender and when."""

    def __call__(self, request: AuthorizationRequest, at: datetime) -> AuthorizationDecision:
        try:
            action = Action(request.action)
        except ValueError:
            return AuthorizationDecision(False, "unknown-action")
        try:
            mode = ServiceMode(request.mode)
        except ValueError:
            return AuthorizationDecision(False, "mode-not-allowed")
        try:
            profiles = [
                None if p is None else Profile(p)
                for p in (request.sender_profile, request.receiver_profile)
            ]
        except ValueError:
            return AuthorizationDecision(False, Reason.PROFILE_NOT_ALLOWED.value)
        ask = Request(request.sender, request.receiver, request.matter, action, mode, *profiles)
        decision = authorize(self._index, ask, at)
        pinned = request.agreement
        if isinstance(decision, Deny):
            if pinned is not None and self._may_load_later(pinned, at):
                return self._unknown(pinned, request.sender, at)
            return AuthorizationDecision(
                False, decision.reason.value, detail=self._explain(decision, request)
            )
        key = (decision.clause.agreement_id, decision.clause.version)
        granted = AgreementRef(id=key[0], version=key[1], digest=self._digests[key])
        if pinned is not None and pinned != granted:
            if self._may_load_later(pinned, at):
                return self._unknown(pinned, request.sender, at)
            return AuthorizationDecision(False, "agreement-mismatch")
        return AuthorizationDecision(True, None, granted)

    def _unknown(self, pinned: AgreementRef, sender: str, at: datetime) -> AuthorizationDecision:
        """The refusal of a packet under a version this node may not have loaded yet,
        remembered for the staff alert."""
        self.unknown.pop(pinned, None)
        self.unknown[pinned] = (sender, at)
        while len(self.unknown) > UNKNOWN_KEPT:
            del self.unknown[next(iter(self.unknown))]
        return AuthorizationDecision(
            False,
            AGREEMENT_UNKNOWN,
            detail=f"this node does not hold agreement {pinned.id} version {pinned.version} "
            "signed by every party (not loaded yet, or a party's signature does not verify "
            "here)",
        )

    def _may_load_later(self, pinned: AgreementRef, at: datetime) -> bool:
        """True when this node holds no fully signed copy of the pinned version (a copy
        with a different digest is a conflict, not a delay) and no fully signed later
        version of that agreement (then the sender is the one behind)."""
        key = (pinned.id, pinned.version)
        held = self._digests.get(key)
        if held is not None and held != pinned.digest:
            return False
        signed = self._index.signed_at(*key)
        if held is not None and signed is not None and signed <= at:
            return False  # held and signed: refused for another reason
        return all(v <= pinned.version for v in self._index.signed_versions(pinned.id, at))

    def _explain(self, deny: Deny, request: AuthorizationRequest) -> str | None:
        """A sentence for a ``profile-not-allowed`` refusal (None for other reasons)."""
        if deny.reason is not Reason.PROFILE_NOT_ALLOWED:
            return None
        for lc in self._index.candidates(request.sender, request.receiver):
            if lc.agreement.ref == deny.agreement:
                return _profile_refusal(lc.agreement, request)
        return None


def _profile_refusal(agreement: Agreement, request: AuthorizationRequest) -> str:
    """Which profiles ``agreement`` allows and which the two nodes of ``request`` have."""
    allowed = ", ".join(sorted(agreement.crypto_profiles or ())) or "any"
    return (
        f"agreement {agreement.id} v{agreement.version} allows the cryptographic profiles "
        f"[{allowed}]; node {request.sender} is in the {request.sender_profile} profile "
        f"and node {request.receiver} in the {request.receiver_profile} profile"
    )


def unknown_agreement_alerts(authorizer: AgreementAuthorizer, now: datetime) -> list[StaffAlert]:
    """An alert per agreement version partners sent packets under in the last
    :data:`UNKNOWN_ALERT_FOR` that this node does not hold (until a reload installs it:
    a new authorizer starts with none)."""
    alerts: list[StaffAlert] = []
    for ref, (sender, at) in sorted(authorizer.unknown.items(), key=lambda kv: kv[0].id):
        if now - at > UNKNOWN_ALERT_FOR:
            continue
        alert = StaffAlert.of(
            "agreements",
            f"unknown:{ref.id}:{ref.version}",
            "agreement-unknown",
            Severity.CRITICAL,
            at,
            "对方按本节点尚未载入的协议版本发来案卷，案卷暂时无法接收",
            "A partner sends packets under an agreement version this node has not loaded",
            f"Node {sender} sends packets under agreement {ref.id} version {ref.version} "
            f"(document digest {ref.digest}), which this node does not hold signed by every "
            "party. Install the signed agreement file and reload the node (tongban reload); "
            "if it is installed, a party's signature does not verify here (see the reload "
            "report). The partner keeps retrying until then",
            subject=sender,
            extra={"peer": sender},  # the console names the office
        )
        alerts.append(alert)
    return alerts


def load_authorizer(
    paths: Sequence[Path], bundle: TrustBundle, *, at: datetime
) -> AgreementAuthorizer:
    """Read, verify and index the agreement files at ``paths``."""
    lifecycles = []
    digests: dict[tuple[str, int], str] = {}
    loaded: list[tuple[SignedAgreement, Evaluation]] = []
    for path in paths:
        try:
            signed = SignedAgreement.from_bytes(path.read_bytes())
        except OSError as exc:
            raise AgreementLoadError(f"{path}: cannot read: {exc.strerror}") from None
        except AgreementError as exc:
            raise AgreementLoadError(f"{path}: {exc}") from None
        evaluation = signed.evaluate(bundle, at=at)
        lifecycles.append(evaluation.lifecycle)
        loaded.append((signed, evaluation))
        digests[signed.agreement.ref] = document_digest(signed.agreement)
    return AgreementAuthorizer(AgreementIndex(lifecycles), digests, tuple(loaded))


class AgreementSwitch:
    """The authorizer a running core calls, replaced as a whole on reload.

    ``on_install(authorizer, bundle, at)`` runs before the switch (the node records the
    agreement events in its audit log there); if it raises, the old set stays in force.
    """

    def __init__(
        self,
        current: AgreementAuthorizer,
        on_install: Callable[[AgreementAuthorizer, TrustBundle, datetime], None] | None = None,
    ) -> None:
        self.current = current
        self._on_install = on_install

    def __call__(self, request: AuthorizationRequest, at: datetime) -> AuthorizationDecision:
        return self.current(request, at)

    @property
    def loaded(self) -> tuple[tuple[SignedAgreement, Evaluation], ...]:
        return self.current.loaded

    def install(self, authorizer: AgreementAuthorizer, bundle: TrustBundle, at: datetime) -> None:
        if self._on_install is not None:
            self._on_install(authorizer, bundle, at)
        self.current = authorizer
