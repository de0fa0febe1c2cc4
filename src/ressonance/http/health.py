"""``GET /health`` (liveness: the process answers) and ``GET /ready`` (readiness: send it new
connections), answered alike on the public and the admin listener (docs/observability.md)."""

from __future__ import annotations

from collections.abc import Callable

from ressonance.exchange import Response
from ressonance.protocol.messages import dumps

Readiness = Callable[[], list[str]]  # why not ready; empty: ready


def json_response(status: int, body: object) -> Response:
    return Response(status, dumps(body).encode())


def health() -> Response:
    return json_response(200, {"status": "ok"})


def ready(unready: Readiness, degraded: Readiness | None = None) -> Response:
    """503 with the reasons not to send this node connections; else 200, with what works less
    well (``degraded``) but would be the same on every node, such as the app store down."""
    reasons = unready()
    if reasons:
        return json_response(503, {"ready": False, "reasons": reasons})
    notes = degraded() if degraded is not None else []
    if notes:
        return json_response(200, {"ready": True, "degraded": notes})
    return json_response(200, {"ready": True})
