"""The node's HTTP shell: three aiohttp applications and the mutual-TLS peer link.

- :mod:`relay.http.federation` — partner nodes only (mutual TLS, peer = certificate);
- :mod:`relay.http.staff` — the office's staff API (bearer JWT);
- :mod:`relay.http.public` — health, readiness, the published descriptor;
- :mod:`relay.http.link` — :class:`~relay.http.link.HttpsPeerLink`, the core's
  ``PeerLink`` over HTTPS.

Handlers only decode a request, call the relay core (:class:`relay.http.api.RelayApi`,
which ``relay.core.service.RelayNode`` implements) and encode the result. Core
exceptions become problem documents in one place (:func:`relay.http.api.core_errors`).
"""
