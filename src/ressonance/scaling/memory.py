"""The single-node broker: publications go straight to this node's handler."""

from __future__ import annotations

from ressonance.scaling.base import PublicationHandler


class MemoryBroker:
    """Default broker for one node; also the fake for node tests."""

    def __init__(self) -> None:
        self._handler: PublicationHandler | None = None

    async def start(self, handler: PublicationHandler) -> None:
        self._handler = handler

    def publish(self, app_id: str, channel: str, message: str, exclude: str | None) -> None:
        if self._handler is not None:
            self._handler.deliver(app_id, channel, message, exclude)

    async def close(self) -> None:
        self._handler = None
