"""Multilateral mutual-authorization agreements that the machines enforce.

An agreement is one JSON document with N parties (node ids). Per matter it pins the
service modes, who may receive for whom, who handles, who may survey on behalf of whom,
who issues licences, and the agreed standard (materials, time limit in working days,
site survey and its checklist). Every party signs the same canonical bytes with its
seal (detached JWS). The agreement is in force only while fully signed, inside its
validity window, not suspended, and only between parties that have not withdrawn.

Modules, each one concept:

- :mod:`~agreements.model` frozen data and canonical bytes; :mod:`~agreements.document`
  strict parsing with JSON-pointer errors; :mod:`~agreements.draft` template + catalog;
- :mod:`~agreements.signatures` party signatures and signed events (via
  :mod:`signing.jws`); :mod:`~agreements.signed` the signed-agreement file;
- :mod:`~agreements.events` and :mod:`~agreements.lifecycle` the state machine, with
  time as an argument and history kept so "what held at t" is answerable;
- :mod:`~agreements.actions` the action → role table; :mod:`~agreements.authorize` the
  decision and its pair index (cost independent of the number of agreements/matters);
- :mod:`~agreements.catalog` matters; :mod:`~agreements.calendar` working days.

Nothing here does I/O beyond reading the bundled data files; HTTP and storage live in
:mod:`relay`.
"""

from agreements.actions import ACTION_RULES, Action, Relation
from agreements.authorize import (
    AgreementIndex,
    ClauseRef,
    Decision,
    Deny,
    Permit,
    Reason,
    Request,
    authorize,
)
from agreements.errors import (
    AgreementError,
    CalendarError,
    IllegalTransition,
    MalformedAgreement,
    SignatureRefused,
)
from agreements.events import Event, EventKind
from agreements.lifecycle import Lifecycle, State
from agreements.model import Agreement, Material, MatterClause, Party, Roles, ServiceMode

__all__ = [
    "ACTION_RULES",
    "Action",
    "Agreement",
    "AgreementError",
    "AgreementIndex",
    "CalendarError",
    "ClauseRef",
    "Decision",
    "Deny",
    "Event",
    "EventKind",
    "IllegalTransition",
    "Lifecycle",
    "MalformedAgreement",
    "Material",
    "MatterClause",
    "Party",
    "Permit",
    "Reason",
    "Relation",
    "Request",
    "Roles",
    "ServiceMode",
    "SignatureRefused",
    "State",
    "authorize",
]
