"""Cryptographic profiles: which family of algorithms a node signs and is sealed to with.

Two profiles (docs/protocol.md §1.2, §4.4):

- ``default`` — Ed25519 (or ECDSA P-256) seals, HPKE sealing, SHA-256 audit log;
- ``sm`` — SM2 seals signing SM2-with-SM3, ``sm2-sm4gcm`` sealing, SM3 audit log.

A node's profile is read from its **seal certificate**: ``sm`` when the certificate
carries an SM2 key, ``default`` otherwise. The same key type decides everything else of
the profile (the descriptor of an SM node lists ``sm2-sm4gcm`` keys only, so senders seal
to it with SM2 + SM4-GCM; its audit log hashes with SM3), so one certificate names the
profile without a second field that could disagree with it. Agreements name the
profiles they allow (``crypto_profiles``, :mod:`agreements.model`).
"""

from __future__ import annotations

from enum import StrEnum

from cryptography import x509

from signing import sm_x509

__all__ = ["Profile", "certificate_profile"]


class Profile(StrEnum):
    """A cryptographic profile; the value is its name on the wire and in agreements."""

    DEFAULT = "default"
    SM = "sm"


def certificate_profile(certificate: x509.Certificate) -> Profile:
    """The profile of the node whose seal certificate is ``certificate``."""
    return Profile.SM if sm_x509.sm2_public_key(certificate) is not None else Profile.DEFAULT
