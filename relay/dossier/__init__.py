"""Case dossiers: everything one office holds about a case, provable offline years later.

Design note. The proof of a case is spread over two nodes' databases and it expires: a
CRL runs out after 30 days, certificates after two years, and a signature's own ``iat``
is only its signer's claim. A dossier (``docs/dossier.md``, normative) freezes it in one
ZIP in the spirit of ASiC-E: every packet and receipt of the case from this office's
side, the licence, the agreement with its party signatures, for each signed item an
audit proof bundle to a checkpoint of our log, the checkpoints' RFC 3161 timestamp
tokens, and the CRLs in force; one manifest with the SHA-256 of every member, signed
by the node's seal.

- :mod:`relay.dossier.layout` (pure): member names, the manifest and the ZIP.
- :mod:`relay.dossier.export` (I/O shell): collect a case from a node's database.
- :mod:`relay.dossier.verify` (pure; time and trust are arguments): one line per
  signature — who, when (claimed, and proven by which timestamp over which
  checkpoint), on which chain, revocation status at that time — plus one line per
  member, proof or timestamp that fails.
- :mod:`relay.dossier.report`: the validation report as JSON and as HTML (zh/en).

Revocation is judged at the signing time, not at verification time: a certificate
revoked *after* the signature was proven to exist (by a timestamp) leaves the signature
good; one revoked before the time the signature claims is reported as revoked even when
the CRL saying so was published later; one revoked in between is indeterminate.
"""

__all__: list[str] = []
