"""RFC 3161 trusted timestamps of the node's checkpoints.

Design note. A signed checkpoint proves that the node held its log of that size, but
*when* rests on the node's own word and on its partners' cosignatures. A trusted
timestamp from an outside time-stamping authority (TSA, RFC 3161) closes that gap in the
way X-Road archives its message log: one token per checkpoint covers every leaf up to it,
so the TSA sees one request per checkpoint interval, never a packet.

- :mod:`relay.timestamps.tokens` (pure): the request for a checkpoint note (SHA-256 of
  the exact signed note bytes) and the check of an answer against the configured TSA
  trust — chain, ``timeStamping`` EKU, imprint, nonce — through ``rfc3161-client``.
  Certificates are judged at the token's own ``genTime``, so a token checks years later.
- :mod:`relay.timestamps.store`: table ``audit_timestamps`` in ``relay.sqlite3``, next to
  ``audit_checkpoints`` (size PK, the DER ``TimeStampResp``, genTime).
- :mod:`relay.timestamps.stamper`: the catch-up step (every checkpoint without a token
  is sent to the TSA, oldest first) and the staff alert source. A TSA that is down never
  stops the exchange: checkpoints are signed as before, tokens come later, and once the
  oldest unstamped checkpoint is older than ``[timestamps] alert_after`` staff see
  ``tsa-unavailable`` on the alert board.
"""

__all__: list[str] = []
