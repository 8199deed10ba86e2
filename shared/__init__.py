"""Helpers below every layer (with ``config`` and ``errors``): paging tokens, text checks."""
