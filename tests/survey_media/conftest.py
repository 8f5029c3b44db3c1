"""Survey media tests: helpers live in ``media_support`` (importable from this folder)."""
