"""The ``X-Cost-USD`` response header: the cost of one priced answer, for every protocol.

Why a header as well as the body: Open Inference (``/v2``) answers have no usage object, and
a client SDK may drop fields it does not know (google-genai does, in ``usageMetadata``), while
every SDK exposes the raw headers. The value is the gateway's own integer micro-USD written as
exact decimal USD (``0.013000``); it is absent when the version has no price or reported no
usage. Streams carry their cost in-band instead (their headers leave before the cost is known).
"""
from __future__ import annotations

from flask import Response

from money import micro_to_text

COST_HEADER = "X-Cost-USD"


def set_cost(response: Response, micro: int | None) -> Response:
    """Add the header when the answer was priced; returns ``response``."""
    if micro is not None:
        response.headers[COST_HEADER] = micro_to_text(micro)
    return response
