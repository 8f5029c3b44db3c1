"""The demo's exceptions (tree drawn in :mod:`relay.demo`)."""

from __future__ import annotations

__all__ = ["DemoError", "NotADemoDatabase", "NotADemoFolder", "StepFailed"]


class DemoError(Exception):
    """Base of the demo's errors."""


class NotADemoFolder(DemoError):
    """The work folder exists, is not empty and has no demo marker: left untouched."""


class StepFailed(DemoError):
    """A check of a demo step did not hold."""


class NotADemoDatabase(DemoError):
    """The PostgreSQL database given is unreachable or holds a schema the demo did not
    make (never dropped)."""
