"""Multilateral mutual-authorization agreements (pure; no HTTP, no storage)."""
