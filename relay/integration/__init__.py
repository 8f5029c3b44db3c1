"""Connecting an office's own systems, and guarding the personal data cases carry.

An office already runs a platform (统一受理平台) and departmental systems; this package
lets them work with the node without anyone typing a case twice (docs/integration.md):

- **events out** — every change a platform may act on (a case created, the partner's
  step, a refusal, an SLA colour, a survey report, a licence, a complaint) is written to
  an event outbox *in the transaction of the change* (:mod:`.store`, fed by the case
  store's sink) and pushed to the configured webhook targets, signed, in order, retried
  with backoff and parked with a reason after a limit (:mod:`.webhooks`);
- **content in and results out** — the matter's application schema, a case imported in
  it, the handling result exported (:mod:`.http`; the schema and its rules are the case
  layer's :mod:`relay.cases.application`, since both offices apply them);
- **personal data** — every read is logged with who, when and why and reported per
  applicant; an applicant's data is exported for them; after the agreement's retention
  period a scheduled purge removes the content and logs that it did (:mod:`.retention`).

:mod:`.events` is the pure core (case copies in, events out). Imports point one way:
``relay.integration`` uses ``relay.cases`` and ``relay.core``; nothing there imports it.
:class:`~relay.integration.layer.IntegrationLayer` plugs it into a node.
"""
