"""The per-node audit log: a Merkle log that partner offices witness.

Design note. Every fact a node must be able to prove later — a packet sent or received,
a receipt, an agreement event, a licence issued or changed, a survey report — becomes a
leaf (:mod:`relay.audit.leaves`, canonical JSON) appended in the *same* SQLite
transaction as the fact itself (:mod:`relay.audit.store`), so the log and the database
never disagree. Leaves are hashed into an RFC 9162 Merkle tree (:mod:`relay.audit.merkle`).

Two profiles (issue 19): a node with an Ed25519 seal keeps a SHA-256 log with Ed25519
checkpoints; a node with an SM2 seal an SM3 log with SM2 checkpoints (the note types
are in :mod:`relay.audit.note_types`). The hash is fixed in the database for the life
of the log and named in every checkpoint; a witness of either profile verifies with the
origin's hash and key type and cosigns with its own.

At an interval and on demand the node signs a checkpoint — origin, size, root — as a
C2SP signed note with its seal key (:mod:`relay.audit.checkpoint`). Partners fetch it
with a consistency proof from the last checkpoint they cosigned, check it and cosign
(:mod:`relay.audit.witness`, C2SP ``cosignature/v1``); both keep the cosigned note. A
checkpoint that is not consistent with an earlier one signed by the same key is a fork:
the witness keeps both notes as evidence, halts the partner and the relay alerts staff.
Partners that compare the cosigned checkpoints they hold for a third node catch a node
that shows them different histories (split view). :mod:`relay.audit.exchange` holds
both sides of the federation API messages that carry the exchange.

Any single leaf can be shown to an outsider as an offline proof bundle
(:mod:`relay.audit.bundle`): the leaf, its inclusion proof and the signed checkpoint,
with the seal certificate chain that checks against the federation trust bundle.

Everything except :mod:`relay.audit.store` is pure: keys, time and proofs are arguments.
The normative formats are in ``docs/protocol.md`` section 7.
"""

__all__: list[str] = []
