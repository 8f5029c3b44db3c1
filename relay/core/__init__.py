"""The relay core: case packets, outbox, inbox, receipts and their storage — no HTTP.

Design note
-----------
A *packet* is an outer compact JWS signed by the sending node's seal whose payload is
the routing facts any hop may check, with the business content HPKE-sealed inside as
an inner JWS (``relay.core.packets``). The *receiver* runs a fixed pipeline of named
checks (``relay.core.receiver``) and answers every packet with a signed *receipt*:
accepted, or rejected with a stable reason code. Accepted packets and their receipts
are committed before the receipt leaves, so a crash after the commit and before the
answer costs only a retry: the duplicate gets the original receipt back.

The *outbox* (``relay.core.outbox``, pure policy) sends per destination in batches,
never more than the head of each case's sequence per request (packet ``seq`` k+1 only
after k is receipted), backs off exponentially with full jitter, and dead-letters
packets past their expiry (and the undeliverable successors of a dead or rejected
packet). Catch-up after an outage is nothing special: everything unacknowledged is
still queued, in order.

Attachments are staged in plaintext by staff, sealed at rest with a fresh stream key
(``signing.stream``) into a content-addressed blob directory, uploaded resumably to the
partner before the packet naming them, and opened there with the key carried inside
the sealed packet content.

``relay.core.service.RelayNode`` composes it all over a ``RelayStore``
(``relay.core.sqlite_store``) and a ``PeerLink`` (``relay.core.fakes.FakePeerLink`` in
tests, mutual TLS in ``relay.http``).
"""
