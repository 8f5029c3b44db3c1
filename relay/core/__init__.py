"""The relay core: case packets, outbox, inbox, receipts and their storage — no HTTP.

Design note
-----------
A *packet* (``packets``) is an outer compact JWS signed by the sending node's seal whose
payload is the routing facts any hop may check, with the business content HPKE-sealed
inside as an inner JWS the recipient can later show an auditor. Every packet is answered
with a signed *receipt* (``receipts``): accepted, or rejected with a stable reason code.

Receiving (``inbox``) runs a fixed pipeline of named checks (``receiver``): the pure,
slow part (signatures, certificate paths, HPKE) for a whole batch in a worker thread,
then one short store transaction for deduplication, sequence, persistence, audit
leaves and receipts. The transaction commits before any receipt leaves, so a crash
after the commit and before the answer costs only a retry: the duplicate gets the
original receipt back, byte for byte. The application above may add one last check on
the opened content (``ports.ContentCheck``; the case layer refuses a partner's step its
state machine does not allow), run in that transaction before anything is stored and
told what the batch accepted before; the core never learns what the content means.

Sending (``sender``) applies the pure outbox policy (``outbox``): per destination,
batches of case heads only (``seq`` k+1 after k is receipted), full-jitter capped
backoff, dead letters for expired packets and the successors of a dead or rejected one
(after which the case continues from its last live packet). Catch-up after an outage is
nothing special: everything unacknowledged is still queued, in order.

Attachments (``attachments``, ``blobs``, ``staging``) are uploaded in plaintext by
staff and sealed as they stream in, under a fresh stream key, into a content-addressed
blob directory (each byte written once), uploaded resumably to the partner before the
packet naming them, and opened there with the key carried in the sealed content.

Storage goes through one interface (``store``); ``sqlite_store`` implements it on one
SQLite file per node (WAL, ``synchronous=FULL``). ``directory`` holds verified partner
descriptors with key rotation; ``ports`` names what the core needs from outside
(``PeerLink``, ``Authorizer``, clock, trust bundle source); ``fakes`` links nodes in
memory with loss, delay and down partners. ``service.RelayNode`` composes it all.
"""
