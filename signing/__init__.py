"""The signing core: identities, signatures and sealing. No network I/O, no config.

Callers import the module they need; the package itself imports nothing, so a command
that checks one signature does not load the licence forms, tink and every sealing
suite first (importing them all took a third of the start of a ``tongban`` command).

- identities and signatures: :mod:`signing.certificates` (trust bundles, path
  validation), :mod:`signing.keys` (``Signer``), :mod:`signing.jws` (compact JWS),
  :mod:`signing.files` (signed file manifests), :mod:`signing.descriptor` (node
  descriptors), :mod:`signing.nodedir` (a node's key folder), :mod:`signing.errors`;
- sealing: :mod:`signing.hpke` (HPKE, ML-KEM-768+X25519), :mod:`signing.stream` and
  :mod:`signing.segments` (segmented streams), :mod:`signing.sealed` (sealed files),
  :mod:`signing.at_rest`, and the SM profile's :mod:`signing.sm2`,
  :mod:`signing.sm_x509` and :mod:`signing.sm_seal`;
- e-licences: :mod:`signing.licence`, :mod:`signing.licence_compact` (the QR form),
  :mod:`signing.licence_report`, :mod:`signing.status_list`, :mod:`signing.qr`.
"""
