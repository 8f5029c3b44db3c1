"""``tongban cases``: cases through the node's staff API.

::

    tongban cases --config node.toml [--overdue] [--json]       list (yellow/red only)
    tongban cases --config node.toml show CASE [--json]
    tongban cases --config node.toml open --matter M --handling CODE [--material NAME]…
    tongban cases --config node.toml act CASE EVENT [--details JSON]

Exit codes: 0 done; 1 the node refused (illegal step, not granted, unknown case);
2 usage, configuration or the node unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any
from urllib.parse import quote

import aiohttp

from relay.cli._common import CliError
from relay.cli.casework import _api_error, _client
from relay.staff_auth import StaffRole
from relay.staff_client import StaffApiError, StaffClient

__all__ = ["register"]

_EVENTS = (
    "submit", "accept", "reject", "request-correction", "supplement", "request-survey",
    "survey-report", "decide", "issue-licence", "deliver", "conclude", "withdraw", "rate",
    "complain", "answer-complaint",
)  # fmt: skip


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cases = subparsers.add_parser(
        "cases",
        help="list, open and advance cases; --overdue lists yellow and red cases",
        description="Cases of this node through its staff API. Without a subcommand: "
        "list them (--overdue: only those at 75% of their time limit or past it, and "
        "those with a complaint clock at 75% or past it).",
    )
    cases.add_argument("--config", required=True, help="the node's node.toml")
    cases.add_argument("--token", help="staff bearer token (default: minted from the node key)")
    cases.add_argument("--overdue", action="store_true", help="only yellow and red cases")
    cases.add_argument("--json", action="store_true", help="print the API's JSON")
    cases.set_defaults(handler=_list)
    sub = cases.add_subparsers(dest="cases_command", metavar="{show,open,act}")
    show = sub.add_parser("show", help="one case with its timeline")
    show.add_argument("case")
    show.add_argument("--json", action="store_true", help="print the API's JSON")
    show.set_defaults(handler=_show)
    open_ = sub.add_parser("open", help="open a case at hand-in (prints the access code once)")
    open_.add_argument("--matter", required=True)
    open_.add_argument("--handling", required=True, metavar="CODE", help="handling node id")
    open_.add_argument("--mode", default="proxy_receipt")
    open_.add_argument("--case-id", help="case number (default: generated)")
    open_.add_argument("--material", action="append", default=[], metavar="NAME")
    open_.add_argument("--no-submit", action="store_true", help="do not submit yet")
    open_.set_defaults(handler=_open)
    act = sub.add_parser("act", help="take a step on a case")
    act.add_argument("case")
    act.add_argument("event", choices=_EVENTS)
    act.add_argument("--details", default="{}", metavar="JSON", help="event details object")
    act.set_defaults(handler=_act)


async def _post(client: StaffClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        async with (
            client._session() as session,
            session.post(f"{client.base_url}{path}", json=body) as resp,
        ):
            result: dict[str, Any] = await client._json(resp)
            return result
    except aiohttp.ClientError as exc:
        raise StaffApiError(0, "unreachable", f"cannot reach {client.base_url}: {exc}") from None


def _run(coro: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = asyncio.run(coro)
    except StaffApiError as exc:
        raise _api_error(exc) from None
    return result


def _print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def _line(case: dict[str, Any]) -> str:
    clock = case["clock"]
    deadline = clock["deadline"] or "-"
    if clock.get("provisional"):
        deadline += " (provisional holidays 暂定)"
    complaints = [c for c in case.get("complaints", []) if c["answered_at"] is None]
    extra = f"  {len(complaints)} open complaint(s)" if complaints else ""
    return (
        f"{case['case']}  {case['state']:<20}  {clock['colour']:<6}  "
        f"{clock['used_working_days']}/{clock['limit_working_days']} wd  due {deadline}  "
        f"{case['matter']}  {case['receiving']}→{case['handling']}{extra}"
    )


def _list(args: argparse.Namespace) -> int:
    client = _client(args, StaffRole.READER)
    params = {"overdue": "1"} if args.overdue else {}
    cases: list[dict[str, Any]] = []
    while True:  # page after page (the node sends at most a page at once)
        result = _run(client.get("/staff/v1/cases", params))
        page = result["cases"]
        cases += page
        if not args.json:
            for case in page:
                sys.stdout.write(_line(case) + "\n")
        if not result.get("next"):
            break
        params = {"after": result["next"]}
    if args.json:
        _print_json({"cases": cases})
    elif not cases:
        sys.stdout.write("no overdue cases\n" if args.overdue else "no cases\n")
    return 0


def _show(args: argparse.Namespace) -> int:
    client = _client(args, StaffRole.READER)
    case = _run(client.get(f"/staff/v1/cases/{quote(args.case, safe='')}"))
    if args.json:
        _print_json(case)
        return 0
    sys.stdout.write(_line(case) + "\n")
    for step in case["timeline"]:
        mark = "" if step["applied"] else "  (void)"
        sys.stdout.write(f"  {step['at']}  {step['origin']:<9}  {step['event']}{mark}\n")
    return 0


def _open(args: argparse.Namespace) -> int:
    client = _client(args, StaffRole.CLERK)
    body: dict[str, Any] = {
        "matter": args.matter,
        "handling": args.handling,
        "mode": args.mode,
        "materials": args.material,
        "submit": not args.no_submit,
    }
    if args.case_id:
        body["case_id"] = args.case_id
    result = _run(_post(client, "/staff/v1/cases", body))
    case = result["case"]
    sys.stdout.write(
        f"case {case['case']} opened ({case['state']})\n"
        f"access code (give it to the applicant now; it is not shown again): "
        f"{result['access_code']}\n"
        f"tracking path: {result['tracking_path']}\n"
    )
    return 0


def _act(args: argparse.Namespace) -> int:
    try:
        details = json.loads(args.details)
    except ValueError:
        raise CliError("bad-json", "--details is not valid JSON") from None
    if not isinstance(details, dict):
        raise CliError("bad-json", "--details must be a JSON object")
    client = _client(args, StaffRole.CLERK)
    case = _run(
        _post(
            client,
            f"/staff/v1/cases/{quote(args.case, safe='')}/events",
            {"event": args.event, "details": details},
        )
    )
    sys.stdout.write(_line(case) + "\n")
    return 0
