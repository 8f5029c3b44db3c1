"""The federation a node lives in: directories, partners, CRLs, reload.

A province publishes a signed directory of its member nodes
(:mod:`signing.federation_directory`, made by ``tongban pki sign-directory`` through
:mod:`relay.federation.publish`). Every node serves the directories it holds and the
CRLs of its trust bundle on its public listener and fetches the same from configured
sources and from its partners (:mod:`relay.federation.service`), so a directory or a
CRL published at one node spreads to all of them within a few refresh rounds.

Who a node talks to follows from what it signed: its partners are the parties of its
live agreements, found in the directories (:mod:`relay.federation.partners`);
``[[partners]]`` in ``node.toml`` is only an override. Adding an office is therefore: it
joins its province's directory, the parties sign the new agreement version, each node
reloads (:mod:`relay.federation.reload`) — no other node's configuration changes.

Imports point one way: ``directories`` and ``partners`` and ``crls`` are pure (data and
the instant in, data out); ``service`` and ``reload`` are the I/O shell the node uses.
"""
