"""The clerk's console: a single-page application on the staff listener.

Design note
-----------
Window clerks (收件), approvers (审批), inspectors and the office's administrator work
in a browser, not a terminal. The console is plain HTML, CSS and JavaScript modules
(``relay/http/static/console/``: no build step, no CDN, Chinese by default with an
English switch) served at ``/`` of the staff listener, talking to the staff API.

It is a new surface with one-way imports: ``relay.console`` uses the case layer
(:class:`~relay.cases.desk.CaseDesk`, :class:`~relay.cases.terms.AgreementTerms`), the
relay core's outbox/inbox and attachments, and ``signing`` for sealing licences;
nothing below imports it.

- :mod:`~relay.console.views` — pure: the work queue (filters, counts per state, sorted
  by deadline), the per-matter materials checklist, the steps allowed now, the
  partner's refusals;
- :mod:`~relay.console.licensing` — a licence built from what the approver enters,
  sealed by the node;
- :mod:`~relay.console.http` — the routes: the page, the queue, the case page, hand-in,
  steps, the licence and its QR code, attachments, resend, and live updates as
  Server-Sent Events woken by the case desk itself (:meth:`CaseDesk.wait_changed`:
  our own step or a partner's packet applied by the desk's sync), never by polling
  the database, and at most one per second per stream (the changes of that second
  go out as one); the queue is read from each case's row (its queue and clock facts),
  not from its events, one state's rows at a time, at most 200 unless asked, and
  shared between consoles asking with the same filters for the same cases.

:class:`ConsoleLayer` plugs it into a node next to the case layer::

    cases = CaseLayer()
    console = ConsoleLayer(cases, config)
    node = Node(config, core_factory=cases.core_factory,
                extensions=[cases.extension, console.extension])
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from agreements.catalog import default_catalog
from relay.config import NodeConfig
from relay.console.acks import AlertAcks
from relay.console.http import Console, add_console_routes
from relay.console.licensing import LicenceDesk
from relay.http.case_services import CaseLayer
from signing.nodedir import load_node_keys

__all__ = ["ConsoleLayer"]


class ConsoleLayer:
    """The console on the staff listener of a node running ``cases``."""

    def __init__(
        self,
        cases: CaseLayer,
        config: NodeConfig,
        personal_reads: Callable[[str, str, str], None] | None = None,
    ) -> None:
        """``personal_reads`` writes a person's read of a case's personal data (who,
        case, purpose) to the node's access log (the integration layer's)."""
        self._cases = cases
        self._config = config
        self._personal_reads = personal_reads

    def _public_base(self) -> str:
        services = self._cases.services
        assert services is not None
        base = services.verifier.public_endpoint(self._config.node_id)
        if base is not None:
            return base
        listener = self._config.public
        scheme = "https" if listener.tls else "http"
        return f"{scheme}://{listener.host}:{listener.port}"

    def extension(self, listener: str, app: web.Application) -> None:
        if listener != "staff":
            return
        services = self._cases.services
        if services is None or services.terms is None:
            raise RuntimeError("the case layer's core factory has not run")
        keys = load_node_keys(self._config.key_dir)
        licences = LicenceDesk(
            desk=services.desk,
            signer=keys.seal,
            public_base=self._public_base(),
            clock=services.desk.now,
            publish_lists=(
                None if services.licence_status is None else services.licence_status.publish_missing
            ),
        )
        console = Console(
            desk=services.desk,
            core=services.core,
            terms=services.terms,
            catalog=default_catalog(),
            licences=licences,
            acks=AlertAcks(self._config.data_dir / "console" / "alert-acks.jsonl"),
            licence_status=services.licence_status,
            records=self._config.data_dir / "console",
            personal_reads=self._personal_reads,
        )
        add_console_routes(app, console)
