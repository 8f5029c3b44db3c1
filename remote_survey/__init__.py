"""Remote site surveys (远程勘查) with evidence that holds up.

Design note. A remote survey is challenged when its video "could have been taken
anywhere or replayed". This package therefore treats every survey as the production of
evidence, and keeps that evidence format free of any media stack so that it can be
settled, verified and tested on its own:

- :mod:`remote_survey.session` — the plan (case, matter, offices, window, people,
  checklist, site) and a pure state machine ``transition(session, event, at)`` that
  returns the new session plus the evidence to append (a gap when an interruption ends).
- :mod:`remote_survey.join` — role-scoped join tokens (EdDSA JWT) and the per-device
  ledger that makes each link single use per device while allowing the same device to
  rejoin.
- :mod:`remote_survey.entries` / :mod:`remote_survey.evidence` — the kinds of facts a
  survey records and the SHA-256 hash chain over their canonical JSON; verification
  names every altered, removed, inserted or reordered entry.
- :mod:`remote_survey.media`, :mod:`remote_survey.geosummary` — media files re-hashed in
  constant memory; the time-weighted, accuracy-aware "within R metres" summary.
- :mod:`remote_survey.manifest`, :mod:`remote_survey.report` — the evidence manifest
  (a function of the chain, so verifiers recompute it) and the report sealed by the
  surveying office, verified step by step with every failure listed.

The shell around that core (signalling and media, ``docs/protocol.md`` §12):

- :mod:`remote_survey.room` — one running survey: session, chain written to
  ``evidence.jsonl`` entry by entry, who may do what, all times from the injected clock.
- :mod:`remote_survey.peer`, :mod:`remote_survey.fanout` — a server-side aiortc peer per
  participant; every received track consumed at once into bounded buffers, relayed to
  viewers and recorded.
- :mod:`remote_survey.recorder` — short H.264/Opus segments, each hashed and chained as
  it is written; lossless PNG snapshots.
- :mod:`remote_survey.signalling`, :mod:`remote_survey.web` — the WebSocket and the
  pages (``static/``), as an aiohttp app or routes added to the node's public listener.

The wire formats are normative in ``docs/protocol.md`` §10 and §12. Time is always an
argument (server time for evidence); randomness (token ids, challenge codes) is too. The
shell calls into the core and never the other way round. The package reports; it never
decides a case.
"""
