"""Case-flow actions and the role each side must hold under a matter clause.

A request ``(from, to, matter, action, mode)`` is granted by a clause when the
request's mode is allowed (by the clause and by the action) and at least one of the
action's *relations* holds between ``from`` and ``to`` under the clause's roles:

================================  ================================================
relation                          holds when
================================  ================================================
``receiver-to-handler``           ``from`` may receive for ``to``, ``to`` handles
``handler-to-receiver``           ``from`` handles, ``to`` may receive for ``from``
``issuer-to-receiver``            ``from`` issues (and so handles), ``to`` may
                                  receive for ``from`` (hands the licence over)
``handler-to-surveyor``           ``from`` handles, ``to`` may survey on behalf of
                                  ``from``
``surveyor-to-handler``           ``from`` may survey on behalf of ``to``, ``to``
                                  handles
``co-handlers``                   both handle and the mode is ``joint``
================================  ================================================

The table :data:`ACTION_RULES` is normative (docs/protocol.md §6 repeats it).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from agreements.model import Roles, ServiceMode

__all__ = ["ACTION_RULES", "Action", "ActionRule", "Relation", "relation_holds"]


class Action(StrEnum):
    SUBMIT = "submit"
    SUPPLEMENT = "supplement"
    WITHDRAW = "withdraw"
    ACCEPT = "accept"
    REJECT = "reject"
    REQUEST_CORRECTION = "request-correction"
    REQUEST_SURVEY = "request-survey"
    SURVEY_REPORT = "survey-report"
    DECIDE = "decide"
    ISSUE_LICENCE = "issue-licence"
    DELIVER = "deliver"
    STATUS_UPDATE = "status-update"
    RATING = "rating"
    COMPLAINT = "complaint"


class Relation(StrEnum):
    RECEIVER_TO_HANDLER = "receiver-to-handler"
    HANDLER_TO_RECEIVER = "handler-to-receiver"
    ISSUER_TO_RECEIVER = "issuer-to-receiver"
    HANDLER_TO_SURVEYOR = "handler-to-surveyor"
    SURVEYOR_TO_HANDLER = "surveyor-to-handler"
    CO_HANDLERS = "co-handlers"


@dataclass(frozen=True, slots=True)
class ActionRule:
    relations: tuple[Relation, ...]  # any one suffices, tried in this order
    modes: frozenset[ServiceMode]  # modes under which the action may travel


_ALL = frozenset(ServiceMode)
_DESK = frozenset({ServiceMode.PROXY_RECEIPT, ServiceMode.JOINT})
R = Relation

ACTION_RULES: dict[Action, ActionRule] = {
    Action.SUBMIT: ActionRule((R.RECEIVER_TO_HANDLER, R.CO_HANDLERS), _DESK),
    Action.SUPPLEMENT: ActionRule((R.RECEIVER_TO_HANDLER, R.CO_HANDLERS), _DESK),
    Action.WITHDRAW: ActionRule((R.RECEIVER_TO_HANDLER, R.CO_HANDLERS), _DESK),
    Action.ACCEPT: ActionRule((R.HANDLER_TO_RECEIVER, R.CO_HANDLERS), _DESK),
    Action.REJECT: ActionRule((R.HANDLER_TO_RECEIVER, R.CO_HANDLERS), _DESK),
    Action.REQUEST_CORRECTION: ActionRule((R.HANDLER_TO_RECEIVER, R.CO_HANDLERS), _DESK),
    Action.DECIDE: ActionRule((R.HANDLER_TO_RECEIVER,), _DESK),
    Action.REQUEST_SURVEY: ActionRule((R.HANDLER_TO_SURVEYOR,), _ALL),
    Action.SURVEY_REPORT: ActionRule((R.SURVEYOR_TO_HANDLER,), _ALL),
    Action.ISSUE_LICENCE: ActionRule((R.ISSUER_TO_RECEIVER,), _ALL),
    Action.DELIVER: ActionRule((R.RECEIVER_TO_HANDLER,), _ALL),
    Action.STATUS_UPDATE: ActionRule(
        (
            R.RECEIVER_TO_HANDLER,
            R.HANDLER_TO_RECEIVER,
            R.HANDLER_TO_SURVEYOR,
            R.SURVEYOR_TO_HANDLER,
            R.CO_HANDLERS,
        ),
        _ALL,
    ),
    Action.RATING: ActionRule((R.RECEIVER_TO_HANDLER,), _ALL),
    Action.COMPLAINT: ActionRule((R.RECEIVER_TO_HANDLER,), _ALL),
}


def relation_holds(
    relation: Relation, roles: Roles, sender: str, recipient: str, modes: frozenset[ServiceMode]
) -> bool:
    """Whether ``relation`` holds from ``sender`` to ``recipient`` under ``modes``."""
    if relation is R.RECEIVER_TO_HANDLER:
        return roles.receives_for(sender, recipient)
    if relation is R.HANDLER_TO_RECEIVER:
        return roles.handles(sender) and roles.receives_for(recipient, sender)
    if relation is R.ISSUER_TO_RECEIVER:
        return roles.issues(sender) and roles.receives_for(recipient, sender)
    if relation is R.HANDLER_TO_SURVEYOR:
        return roles.handles(sender) and roles.surveys_for(recipient, sender)
    if relation is R.SURVEYOR_TO_HANDLER:
        return roles.surveys_for(sender, recipient)
    return (
        ServiceMode.JOINT in modes
        and sender != recipient
        and roles.handles(sender)
        and roles.handles(recipient)
    )
