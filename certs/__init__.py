"""The development PKI tool (``tongban pki``). Generated material is never committed."""
