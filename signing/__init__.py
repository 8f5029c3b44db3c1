"""The signing core: identities, signatures and sealing. No network I/O, no config.

The public surface is re-exported here; raw primitives stay in private modules.
"""

# --- identities, JWS, file signatures, descriptors (helper H1) ---
from signing.certificates import Identity, Purpose, TrustBundle, is_node_id, validate_path
from signing.descriptor import NodeDescriptor, sign_descriptor, verify_descriptor
from signing.errors import (
    CertificateRejected,
    DecryptionFailed,
    InvalidSignature,
    MalformedInput,
    SigningError,
)
from signing.files import FileManifest, VerifiedFile, file_digest, sign_file, verify_file
from signing.hpke import (
    HpkePrivateKey,
    HpkePublicKey,
    HpkeSuite,
    generate_hpke_key,
    hpke_open,
    hpke_seal,
    seal_info,
)
from signing.jws import VerifiedJws, sign_compact, verify_compact
from signing.keys import Signer
from signing.nodedir import NodeKeys, load_node_keys
from signing.sealed import SealedHeader, open_file, read_header, seal_file
from signing.stream import decrypt_stream, encrypt_stream, new_stream_key

__all__ = [
    "CertificateRejected",
    "DecryptionFailed",
    "FileManifest",
    "Identity",
    "InvalidSignature",
    "MalformedInput",
    "NodeDescriptor",
    "NodeKeys",
    "Purpose",
    "Signer",
    "SigningError",
    "TrustBundle",
    "VerifiedFile",
    "VerifiedJws",
    "file_digest",
    "is_node_id",
    "load_node_keys",
    "sign_compact",
    "sign_descriptor",
    "sign_file",
    "validate_path",
    "verify_compact",
    "verify_descriptor",
    "verify_file",
]

# --- sealing: HPKE, segmented streams, sealed files (helper H2) ---
__all__ += [
    "HpkePrivateKey",
    "HpkePublicKey",
    "HpkeSuite",
    "SealedHeader",
    "decrypt_stream",
    "encrypt_stream",
    "generate_hpke_key",
    "hpke_open",
    "hpke_seal",
    "new_stream_key",
    "open_file",
    "read_header",
    "seal_file",
    "seal_info",
]

# --- e-licences, status lists, QR codes (helper H7) ---
from signing.licence import (  # noqa: E402
    Entitlement,
    Licence,
    StatusEntry,
    StatusSource,
    issue_licence,
    parse_licence,
    verify_licence,
)
from signing.licence_compact import (  # noqa: E402
    Issuer,
    IssuerList,
    IssuerResolver,
    issue_compact_licence,
    licence_url,
    parse_compact_licence,
    verify_compact_licence,
)
from signing.licence_report import Check, CheckResult, Failure, LicenceReport, Outcome  # noqa: E402
from signing.qr import QrImage, render_qr, render_url_qr  # noqa: E402
from signing.status_list import (  # noqa: E402
    StatusList,
    StatusListCredential,
    StatusListRejected,
    StatusPurpose,
    parse_status_list,
    sign_status_list,
    verify_status_list,
)

__all__ += [
    "Check",
    "CheckResult",
    "Entitlement",
    "Failure",
    "Licence",
    "LicenceReport",
    "Outcome",
    "QrImage",
    "StatusEntry",
    "StatusList",
    "StatusListCredential",
    "StatusListRejected",
    "StatusPurpose",
    "StatusSource",
    "issue_licence",
    "parse_licence",
    "parse_status_list",
    "render_qr",
    "sign_status_list",
    "verify_licence",
    "verify_status_list",
]

__all__ += [  # the compact licence form for QR codes
    "Issuer",
    "IssuerList",
    "IssuerResolver",
    "issue_compact_licence",
    "licence_url",
    "parse_compact_licence",
    "render_url_qr",
    "verify_compact_licence",
]
