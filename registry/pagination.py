"""Moved to :mod:`shared.pagination` (below every layer); kept so that older imports work."""
from shared.pagination import MAX_PAGE_SIZE, check_limit, decode_token, encode_token

__all__ = ["MAX_PAGE_SIZE", "check_limit", "decode_token", "encode_token"]
