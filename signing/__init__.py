"""The signing core: identities, signatures and sealing. No network I/O, no config.

The public surface is re-exported here; raw primitives stay in private modules.
"""
