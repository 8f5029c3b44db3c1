"""``tongban serve --config node.toml``: run one node until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from relay.authorizer import AgreementLoadError
from relay.cli._common import CliError, whole_number
from relay.config import ConfigError, NodeConfig, load_config
from relay.gcpause import freeze_startup_objects
from relay.heaptrim import HeapTrimmer, libc_malloc_trim
from relay.logs import configured_logging
from relay.looplag import LoopLag
from relay.metrics import survey_gauges
from relay.node import Node
from relay.staff_auth import TokenKeyError
from relay.workers import WorkersRefused, check_reuse_port
from signing.errors import SigningError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = subparsers.add_parser(
        "serve",
        help="run a node (federation, public and staff listeners, outbox)",
        description="Start the node described by the configuration file and run until "
        "SIGTERM or SIGINT, then stop accepting, finish in-flight requests and close.",
    )
    serve.add_argument("--config", required=True, help="the node's node.toml")
    serve.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serve.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="json: one JSON object a line (what the systemd unit uses); text: for people",
    )
    serve.add_argument(
        "--log-file",
        type=Path,
        help="write the log to this file, rotated by size (default: standard error, "
        "which systemd sends to the journal)",
    )
    serve.add_argument("--log-max-bytes", type=whole_number, default=50 * 1024 * 1024)
    serve.add_argument("--log-backups", type=whole_number, default=10)
    serve.add_argument(
        "--reuse-port",
        action="store_true",
        help="share the listening ports with other workers of this node (SO_REUSEPORT); "
        "the node's tables must be on PostgreSQL ([database] url)",
    )
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise CliError("config", str(exc)) from None
    if args.reuse_port:
        try:
            check_reuse_port(config)
        except WorkersRefused as exc:
            raise CliError("reuse-port", str(exc)) from None
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(
                configured_logging(
                    args.log_level,
                    fmt=args.log_format,
                    file=args.log_file,
                    max_bytes=args.log_max_bytes,
                    backups=args.log_backups,
                )
            )
        except OSError as exc:
            raise CliError("log-file", f"cannot open the log file: {exc}") from None
        return asyncio.run(_run(config, reuse_port=args.reuse_port))


async def _run(config: NodeConfig, *, reuse_port: bool = False) -> int:
    from relay.console import ConsoleLayer
    from relay.http.audit_node import AuditNode
    from relay.http.case_services import CaseLayer
    from relay.http.survey_admission import survey_checked
    from relay.http.survey_cases import SurveyCaseLayer
    from relay.integration.layer import IntegrationLayer
    from remote_survey.errors import SurveyError
    from remote_survey.nodehub import node_survey_hub
    from remote_survey.web import survey_extension

    audit = AuditNode(config)
    try:  # the survey pages and signalling, on the public listener
        surveys, join_key = node_survey_hub(
            config.node_id, config.key_dir, config.data_dir, survey=config.survey
        )
    except (OSError, ValueError, SigningError, SurveyError) as exc:
        raise CliError("start", f"node {config.node_id} cannot run surveys: {exc}") from None
    # case workflow, applicant tracking, licence verification; sealed survey reports judged
    cases = CaseLayer(inner=survey_checked())
    reports = SurveyCaseLayer(cases, surveys)  # sealed survey reports as case packets
    integration = IntegrationLayer(cases)  # webhooks, import/export, personal data
    node = Node(
        config,
        core_factory=integration.core_factory(reports.core_factory),
        extensions=[
            audit.extension,
            # the clerk's console on the staff listener; its reads of personal data logged
            ConsoleLayer(cases, config, integration.log_console_read).extension,
            survey_extension(surveys, join_key),
            cases.extension,
            reports.extension,
            integration.extension,
            survey_gauges(surveys.state_counts),
        ],
        reuse_port=reuse_port,
    )
    try:
        await node.start()
    except (OSError, SigningError, AgreementLoadError, TokenKeyError) as exc:
        raise CliError("start", f"node {config.node_id} could not start: {exc}") from None
    except Exception as exc:  # the edge: any other start failure, traceback in the log
        logging.getLogger("tongban.relay.node").debug("start failed", exc_info=True)
        raise CliError(
            "start", f"node {config.node_id} could not start: {type(exc).__name__}: {exc}"
        ) from None
    frozen = freeze_startup_objects()  # no more 35-40 ms collector pauses (relay.gcpause)
    logging.getLogger("tongban.relay.node").debug("%d objects frozen once started", frozen)
    stop = asyncio.Event()
    trimmer = HeapTrimmer(trim=libc_malloc_trim())  # memory back after bursts (relay.heaptrim)
    node.metrics.add_gauges("heap", trimmer.gauges)
    trimming = asyncio.ensure_future(trimmer.run(stop))
    lag = LoopLag()  # stalls of the one thread everything waits on (relay.looplag)
    node.metrics.add_gauges("loop", lag.gauges)
    looking = asyncio.ensure_future(lag.run(stop))
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        reloads: set[asyncio.Task[object]] = set()

        def on_hangup() -> None:  # SIGHUP: reload (the outcome is logged by the node)
            task: asyncio.Task[object] = asyncio.ensure_future(node.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, on_hangup)
        installed.append(signal.SIGHUP)
        listing = " ".join(f"{name}={url}" for name, url in node.urls.items())
        sys.stdout.write(f"tongban: node {config.node_id} serving {listing}\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        stop.set()
        await asyncio.gather(trimming, looking)
        await node.stop()
    sys.stdout.write(f"tongban: node {config.node_id} stopped\n")
    sys.stdout.flush()
    return 0
