"""Fresher CRLs into the trust bundle (pure).

A CRL fetched from a partner or a source is taken when a root of the bundle issued it
(issuer name and signature), it is not issued in the future (5 minutes of skew), and it
is newer (later ``lastUpdate``) than the bundle's CRL of that root. The new bundle keeps
the roots and, per root, only the newest CRL. Nothing is taken from a CRL of a root the
bundle does not hold: new roots come only with a new trust bundle file.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from signing import pathcache
from signing.certificates import TrustBundle

__all__ = ["fresher_bundle"]

_SKEW = timedelta(minutes=5)


def fresher_bundle(
    bundle: TrustBundle, offered: Iterable[x509.CertificateRevocationList], *, at: datetime
) -> TrustBundle | None:
    """The bundle with the fresher of ``offered`` CRLs in it, or None when none is."""
    newest = {issuer: crl for issuer, (crl, _) in bundle.newest_crls.items()}
    changed = False
    for crl in offered:
        root = next((r for r in bundle.roots if r.subject == crl.issuer), None)
        if root is None or crl.last_update_utc > at + _SKEW:
            continue
        if not pathcache.crl_signed_by(crl, crl.public_bytes(Encoding.DER), root):  # SM2 too
            continue
        held = newest.get(crl.issuer)
        if held is None or crl.last_update_utc > held.last_update_utc:
            newest[crl.issuer] = crl
            changed = True
    if not changed:
        return None
    return TrustBundle(roots=bundle.roots, crls=tuple(newest.values()))
