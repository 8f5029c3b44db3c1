"""The tongban node: packets, outbox/inbox, receipts, storage, HTTP, CLI and demo."""
